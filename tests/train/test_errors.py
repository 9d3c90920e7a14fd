"""Bad input gets our exception, naming the value and the fix."""

import pytest
import torch
from _nets import blobs, mlp

from slimtorch.errors import CheckpointError, ConfigError, InputError
from slimtorch.train import FinetuneOptions, finetune

QUIET = {"progress": False}


@pytest.mark.parametrize("lr", [0, -1e-3, float("nan")])
def test_lr_must_be_positive(lr):
    with pytest.raises(ConfigError, match=r"lr=.* is invalid; use a number > 0, e\.g\. lr=1e-3"):
        finetune(mlp(), blobs(), epochs=1, lr=lr)


def test_epochs_xor_steps():
    with pytest.raises(ConfigError, match="got both of epochs= and steps=; pass exactly one"):
        FinetuneOptions(epochs=1, steps=10)
    with pytest.raises(ConfigError, match="got neither of epochs= and steps="):
        finetune(mlp(), blobs())


def test_unknown_option_suggests():
    with pytest.raises(ConfigError, match="no option 'learning_rate'"):
        finetune(mlp(), blobs(), steps=1, learning_rate=1e-3)
    with pytest.raises(ConfigError, match="optimizer='adam' is unknown.*did you mean adamw"):
        FinetuneOptions(steps=1, optimizer="adam")


def test_labels_beyond_the_head():
    with pytest.raises(
        InputError, match=r"labels go up to 9 but the student outputs 5 logits.*num_classes=10"
    ):
        finetune(mlp(out=5), blobs(), steps=1, **QUIET)


def test_inputs_that_do_not_fit():
    signals = torch.utils.data.TensorDataset(
        torch.randn(64, 1, 40), torch.zeros(64, dtype=torch.long)
    )
    with pytest.raises(
        InputError, match=r"first batch .*\(64, 1, 40\).* does not fit the student.*module '1'"
    ):
        finetune(mlp(), signals, steps=1, **QUIET)


def test_teacher_with_another_width():
    with pytest.raises(
        ConfigError, match="teacher outputs 12 logits per sample but the student 10"
    ):
        finetune(mlp(), blobs(), mlp(out=12), steps=1, **QUIET)


def test_nothing_to_learn_from():
    with pytest.raises(InputError, match="no labels and there is no teacher"):
        finetune(mlp(), [(torch.randn(8, 64),)], steps=1, **QUIET)


def test_malformed_batches_and_data():
    with pytest.raises(InputError, match="a batch is a tuple of 3 items"):
        finetune(mlp(), [(torch.randn(8, 64), torch.zeros(8), torch.zeros(8))], steps=1, **QUIET)
    with pytest.raises(InputError, match="neither a torch Dataset nor an iterable"):
        finetune(mlp(), 42, steps=1, **QUIET)
    with pytest.raises(InputError, match="fewer than one global batch"):
        finetune(mlp(), blobs(16), steps=1, batch_size=32, **QUIET)
    with pytest.raises(ConfigError, match="has no len\\(\\), so pass steps="):
        finetune(
            mlp(),
            (b for b in [(torch.randn(4, 64), torch.zeros(4, dtype=torch.long))]),
            epochs=1,
            **QUIET,
        )


def test_hidden_names_are_checked():
    with pytest.raises(ConfigError, match="student module 'layer9'"):
        finetune(mlp(), blobs(), mlp(), steps=1, hidden=[("layer9", "1")], **QUIET)
    with pytest.raises(ConfigError, match="hidden='1' is not a list of pairs"):
        FinetuneOptions(steps=1, hidden="1")


def test_resume_from_another_model(tmp_path):
    finetune(mlp(hidden=32), blobs(), steps=2, checkpoint_dir=tmp_path, **QUIET)
    with pytest.raises(
        CheckpointError,
        match=r"written for another model: '1.weight' is \(32, 64\) there but \(16, 64\) here",
    ):
        finetune(mlp(hidden=16), blobs(), steps=4, resume=tmp_path, **QUIET)
    with pytest.raises(CheckpointError, match="holds no checkpoint"):
        finetune(mlp(), blobs(), steps=4, resume=tmp_path / "..", **QUIET)
    with pytest.raises(ConfigError, match="checkpoint_every=5 needs checkpoint_dir="):
        finetune(mlp(), blobs(), steps=4, checkpoint_every=5, **QUIET)


def test_options_round_trip_through_json():
    import json

    opts = FinetuneOptions(epochs=2, hidden=[("a", "b")], grad_clip=None, patience=3)
    back = FinetuneOptions.from_dict(json.loads(json.dumps(opts.to_dict())))
    assert back == opts and back.hidden == (("a", "b"),)
