"""Building blocks for efficient CNNs, and the registry ``.slim`` plans rebuild them from."""

from ._registry import build_module, module_config, register_module

__all__ = ["build_module", "module_config", "register_module"]
