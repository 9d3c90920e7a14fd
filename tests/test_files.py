"""Atomic writes: a save killed at any moment leaves the old file or the new one."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from slimtorch._files import atomic_write, check_output_path
from slimtorch.errors import ConfigError


def test_atomic_write_replaces_and_keeps_permissions(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("old")
    os.chmod(path, 0o640)
    atomic_write(path, "new")
    assert path.read_text() == "new" and (path.stat().st_mode & 0o777) == 0o640
    with pytest.raises(ZeroDivisionError):
        atomic_write(path, lambda f: (f.write(b"half"), 1 / 0))
    assert path.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]  # no temp file left


def test_check_output_path(tmp_path):
    assert check_output_path(tmp_path / "x.slim") == tmp_path / "x.slim"
    with pytest.raises(ConfigError, match="does not exist"):
        check_output_path(tmp_path / "no" / "x.slim")
    with pytest.raises(ConfigError, match="is a folder"):
        check_output_path(tmp_path)


_KILLER = textwrap.dedent(
    """
    import json, os, random, signal, sys, time
    import torch
    torch.set_num_threads(1)
    import slimtorch as st

    path, rounds = sys.argv[1], int(sys.argv[2])
    old = st.load_model("torchvision:resnet18", num_classes=10).eval()
    new = st.load_model("torchvision:resnet18", num_classes=10).eval()
    ref = {"old": old.state_dict(), "new": new.state_dict()}
    t = time.perf_counter(); st.save(old, path); took = time.perf_counter() - t
    rng = random.Random(0)
    seen = {"old": 0, "new": 0, "broken": 0}
    for _ in range(rounds):
        st.save(old, path)
        pid = os.fork()
        if pid == 0:  # the child saves the new model over the file, and is killed mid-way
            st.save(new, path)
            os._exit(0)
        time.sleep(rng.uniform(0, 1.2 * took))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        try:
            state = st.load(path).state_dict()
            which = next(k for k, r in ref.items() if all(torch.equal(state[n], r[n]) for n in r))
        except Exception as exc:
            which = "broken"
            print(repr(exc), file=sys.stderr)
        seen[which] += 1
    leftovers = [n for n in os.listdir(os.path.dirname(path)) if n.endswith(".tmp")]
    print(json.dumps(seen | {"leftover_tmp": len(leftovers)}))
    """
)


@pytest.mark.slow  # 10 forked saves of ResNet-18: about a minute on 2 cores
def test_sigkill_during_save_leaves_old_or_new_file(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run(
        [sys.executable, "-c", _KILLER, str(tmp_path / "m.slim"), "10"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    print("SIGKILL during save:", seen)
    assert seen["broken"] == 0, out.stderr[-2000:]
    assert seen["old"] + seen["new"] == 10
