"""Subcommands of the ``slimtorch`` command line, one module per family.

Each module defines ``register(subparsers)`` adding its subcommands; ``slimtorch.cli`` lists
the modules in ``COMMAND_MODULES``.
"""
