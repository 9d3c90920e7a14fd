import pathlib
import pickle
import socket

import pytest


class _Poison:
    """Unpickling this creates a marker file: proof that someone unpickled it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """No network, and a torch hub / Hugging Face cache whose every checkpoint is poisoned.

    Yields a dict: ``marker`` (exists once anything was unpickled), ``attempts`` (network
    calls tried), ``poison(path)`` (writes a poisoned checkpoint at ``path``).
    """
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args[:2])
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    marker = tmp_path / "UNPICKLED"
    home = tmp_path / "torch_home"
    checkpoints = home / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)

    def poison(path):
        pathlib.Path(path).write_bytes(pickle.dumps(_Poison(marker)))
        return pathlib.Path(path)

    for name in ("mobilenet_v3_large-5c1a4163.pth", "resnet50-0676ba61.pth"):
        poison(checkpoints / name)
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    yield {"marker": marker, "attempts": attempts, "poison": poison, "home": home}
    assert not marker.exists(), "something unpickled a file from the hub cache"
    assert not attempts, f"network calls were attempted: {attempts}"
