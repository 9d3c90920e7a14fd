"""finetune: it learns, it is deterministic, its losses and options do what they say."""

import math

import pytest
import torch
import torch.nn.functional as F
from _nets import Encoder, blobs, mlp, same_weights
from torch import nn

from slimtorch.errors import ConfigError
from slimtorch.train import accuracy, finetune
from slimtorch.train.loop import lr_factor

QUIET = {"progress": False}


def test_learns_and_leaves_the_student_alone():
    student, data = mlp(), blobs()
    before = {k: v.clone() for k, v in student.state_dict().items()}
    r = finetune(student, data, epochs=3, lr=1e-2, batch_size=32, **QUIET)
    assert r.steps == 3 * (256 // 32) and r.epochs == pytest.approx(3.0)
    assert r.losses[-1] < 0.5 * r.losses[0]
    assert accuracy(r.model, data) > 0.9
    assert all(torch.equal(before[k], v) for k, v in student.state_dict().items())
    assert not r.model.training and r.model is not student


def test_same_seed_same_weights_other_seed_other_order():
    kw = dict(steps=12, lr=1e-2, batch_size=16, **QUIET)
    a = finetune(mlp(), blobs(), seed=3, **kw)
    b = finetune(mlp(), blobs(), seed=3, **kw)
    c = finetune(mlp(), blobs(), seed=4, **kw)
    assert same_weights(a.model, b.model) and a.losses == b.losses
    assert not same_weights(a.model, c.model)


def test_accumulation_matches_the_whole_batch():
    # Two micro-batches of 16 give the gradient of one batch of 32 (no BatchNorm here).
    kw = dict(steps=6, lr=1e-2, grad_clip=None, **QUIET)
    whole = finetune(mlp(), blobs(), batch_size=32, **kw)
    parts = finetune(mlp(), blobs(), batch_size=16, accumulate=2, **kw)
    assert whole.steps == parts.steps == 6
    for (k, a), b in zip(whole.model.state_dict().items(), parts.model.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5, msg=k)


def test_kd_loss_is_t_squared_kl():
    from slimtorch.train.losses import kd_kl

    s, t, T = torch.randn(4, 10), torch.randn(4, 10), 3.0
    p_t = F.softmax(t / T, -1)
    manual = (p_t * (p_t.log() - F.log_softmax(s / T, -1))).sum(-1).mean() * T * T
    torch.testing.assert_close(kd_kl(s, t, T), manual)
    assert float(kd_kl(t, t, T)) == pytest.approx(0.0, abs=1e-6)


def test_distillation_moves_the_student_to_the_teacher():
    teacher = finetune(mlp(), blobs(), epochs=3, lr=1e-2, batch_size=32, **QUIET).model
    student = mlp(hidden=8)
    x = blobs(64, seed=1).tensors[0]

    def gap(m):
        with torch.no_grad():
            return float(
                F.kl_div(F.log_softmax(m(x), -1), F.softmax(teacher(x), -1), reduction="batchmean")
            )

    unlabeled = [(x[i : i + 16],) for i in range(0, 64, 16)]  # (inputs,) batches: KD alone
    r = finetune(student, unlabeled, teacher, epochs=20, lr=1e-2, temperature=1.0, **QUIET)
    assert gap(r.model) < 0.3 * gap(student)


def test_embedding_model_distills_by_mse_through_a_projection():
    teacher, student = Encoder(width=16), Encoder(width=8)
    ids = torch.randint(0, 50, (8, 12), generator=torch.Generator().manual_seed(0))
    batches = [{"input_ids": ids[i : i + 4], "attention_mask": torch.ones(4, 12)} for i in (0, 4)]
    # Output widths differ (8 vs 16): output MSE is impossible, hidden pairs project.
    with pytest.raises(ConfigError, match=r"shape \(4, 12, 16\).*\(4, 12, 8\)"):
        finetune(student, batches, teacher, steps=1, **QUIET)
    r = finetune(
        student,
        batches,
        teacher,
        steps=40,
        lr=1e-2,
        distill="none",
        hidden=[("mix", "mix")],
        **QUIET,
    )
    proj = r.projections["0"]
    assert proj.dim == 2 and tuple(proj.linear.weight.shape) == (16, 8)
    assert r.losses[-1] < 0.7 * r.losses[0]
    same = finetune(Encoder(16), batches, teacher, steps=3, **QUIET)  # same width: MSE on outputs
    assert math.isfinite(same.losses[-1])


def test_mean_pool_leaves_out_padding_and_cosine_ignores_length():
    from slimtorch.train.losses import cosine_distance, mean_pool

    h = torch.randn(2, 4, 3)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    torch.testing.assert_close(mean_pool(h, mask), torch.stack([h[0, :2].mean(0), h[1].mean(0)]))
    torch.testing.assert_close(mean_pool(h, None), h.mean(1))
    v = torch.randn(5, 8)
    assert float(cosine_distance(3 * v, v)) == pytest.approx(0.0, abs=1e-6)
    assert float(cosine_distance(-v, v)) == pytest.approx(2.0, abs=1e-6)
    with pytest.raises(ConfigError, match="pool='none'"):
        mean_pool(torch.randn(2, 3), None)


def test_pooled_distillation_matches_sentence_embeddings_not_padding():
    torch.manual_seed(0)
    teacher, student = Encoder(width=16), Encoder(width=16)
    ids = torch.randint(0, 50, (8, 12), generator=torch.Generator().manual_seed(0))
    mask = torch.ones(8, 12, dtype=torch.long)
    mask[:, 6:] = 0  # the second half is padding: pooling must leave it out
    batches = [{"input_ids": ids[i : i + 4], "attention_mask": mask[i : i + 4]} for i in (0, 4)]

    def pooled_cos(m):
        with torch.no_grad():
            a, b = (x(ids)["last_hidden_state"][:, :6].mean(1) for x in (m, teacher))
        return float(F.cosine_similarity(a, b).mean())

    kw = dict(steps=30, lr=1e-2, pool="mean", **QUIET)
    r = finetune(student, batches, teacher, distill="cosine", **kw)
    assert r.losses[-1] < 0.3 * r.losses[0]
    assert pooled_cos(r.model) > pooled_cos(student) + 0.6  # measured -0.09 -> 0.77
    # The loss saw only the first six positions: padding tokens carry no gradient.
    ids_pad = ids.clone()
    ids_pad[:, 6:] = 0
    padded = [{"input_ids": ids_pad[i : i + 4], "attention_mask": mask[i : i + 4]} for i in (0, 4)]
    again = finetune(student, padded, teacher, distill="cosine", **kw)
    assert again.losses == pytest.approx(r.losses, abs=1e-6)
    mse = finetune(student, batches, teacher, distill="mse", **kw)
    assert mse.losses[-1] < 0.3 * mse.losses[0]
    with pytest.raises(ConfigError, match="pool='bogus' is unknown"):
        finetune(student, batches, teacher, steps=1, pool="bogus", **QUIET)


def test_hidden_states_of_a_narrower_cnn_project_channels():
    from slimtorch.train.models import digits_cnn

    teacher, student = digits_cnn(width=8).eval(), digits_cnn(width=4)
    data = blobs(64)
    r = finetune(student, data, teacher, steps=2, batch_size=32, hidden=[("5", "5")], **QUIET)
    proj = r.projections["0"]  # module "5" is the second ReLU: (B, 8) vs (B, 16) channels
    assert proj.dim == 1 and tuple(proj.linear.weight.shape) == (16, 8)


def test_lr_schedule_warms_up_then_decays_to_zero():
    assert [lr_factor(s, 4, 10) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(4, 4, 10) == 1.0
    assert lr_factor(7, 4, 10) == pytest.approx(0.5)
    assert lr_factor(10, 4, 10) == pytest.approx(0.0)
    r = finetune(mlp(), blobs(), steps=4, lr=0.1, warmup_steps=2, optimizer="sgd", **QUIET)
    assert r.steps == 4


def test_early_stopping_and_eval_history():
    values = iter([0.5, 0.6, 0.55, 0.58, 0.59, 0.9])
    r = finetune(
        mlp(), blobs(), steps=40, eval_fn=lambda m: next(values), eval_every=2, patience=3,
        batch_size=32, **QUIET,
    )  # fmt: skip
    assert r.stopped_early and r.steps == 10
    assert r.evals == [(2, 0.5), (4, 0.6), (6, 0.55), (8, 0.58), (10, 0.59)]
    assert (r.best_eval, r.best_step) == (0.6, 4)
    with pytest.raises(ConfigError, match="eval_fn returned 'high'"):
        finetune(mlp(), blobs(), steps=1, eval_fn=lambda m: "high", **QUIET)


def test_user_loss_and_tuple_outputs():
    class TupleNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = mlp()

        def forward(self, x):
            return self.body(x), "aux"

    seen = []

    def loss_fn(output, labels):
        seen.append(type(output))
        return F.cross_entropy(output[0], labels)

    r = finetune(TupleNet(), blobs(), steps=2, loss_fn=loss_fn, batch_size=32, **QUIET)
    assert r.steps == 2 and seen == [tuple, tuple]


def test_finetune_leaves_the_callers_rng_alone():
    import random

    data = [(torch.randn(8, 4), torch.randint(0, 2, (8,))) for _ in range(3)]
    model = nn.Linear(4, 2)
    torch.manual_seed(123)
    random.seed(7)
    expected_t, expected_py = torch.rand(3), random.random()
    torch.manual_seed(123)
    random.seed(7)
    finetune(model, data, steps=2, seed=5, progress=False)
    assert torch.equal(torch.rand(3), expected_t) and random.random() == expected_py
