"""``slimtorch finetune``: trains, saves, distills from a .slim teacher, resumes."""

import json

import torch

from slimtorch.cli import main
from slimtorch.io.slim import load

SPEC = "slimtorch.train.models:digits_cnn"


def _run(capsys, *argv):
    code = main(["finetune", *argv, "--json"])
    captured = capsys.readouterr()
    return code, (json.loads(captured.out) if code == 0 else captured.err)


def test_finetune_save_distill_resume(tmp_path, capsys):
    teacher = tmp_path / "teacher.slim"
    code, out = _run(capsys, SPEC, "--data", "digits", "--steps", "25", "--lr", "5e-3",
                     "-o", str(teacher))  # fmt: skip
    assert code == 0 and out["steps"] == 25 and out["accuracy_after"] > 0.5
    assert out["accuracy_after"] > out["accuracy_before"] + 0.3
    assert load(teacher, trust_code=True)[0].out_channels == 32

    ckpt, student = tmp_path / "ckpt", tmp_path / "student.slim"
    common = [SPEC, "--data", "digits", "--teacher", str(teacher), "--trust-code"]
    code, out = _run(capsys, *common, "--steps", "6", "--checkpoint-dir", str(ckpt),
                     "--checkpoint-every", "3")  # fmt: skip
    assert code == 0 and out["steps"] == 6 and out["checkpoint"].endswith("step-00000006.ckpt")
    code, out = _run(capsys, *common, "--steps", "9", "--resume", str(ckpt), "-o", str(student))
    assert code == 0 and out["resumed_from"] == 6 and out["steps"] == 9
    model = load(student, trust_code=True)
    assert model(torch.zeros(1, 1, 8, 8)).shape == (1, 10)


def test_errors_are_one_line(tmp_path, capsys):
    code, err = _run(capsys, SPEC, "--data", str(tmp_path / "nope"), "--steps", "1")
    assert code == 2 and "neither a built-in data set (digits, mnist1d) nor a folder" in err
    code, err = _run(capsys, SPEC, "--data", "digits", "--steps", "1", "--lr", "0")
    assert code == 2 and "lr=0.0 is invalid" in err and "Traceback" not in err
    code, err = _run(capsys, SPEC, "--data", "digits", "--steps", "1", "--resume", str(tmp_path))
    assert code == 2 and "holds no checkpoint" in err
