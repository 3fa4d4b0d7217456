"""The proxy trainer: results, determinism, callbacks, and runs that go wrong."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from placement_search import load_space
from placement_search.data import SyntheticConfig, SyntheticMotion
from placement_search.train import ProxyBudget, train_proxy

SMALL = SyntheticConfig(frames=8, size=16, eval_clips=44, classes=("square", "disk", "right", "left"))


@pytest.fixture(scope="module")
def tiny():
    return load_space("tiny")


def budget(**kw) -> ProxyBudget:
    base = {"steps": 12, "batch_size": 8, "eval_every": 0, "warmup_steps": 2, "log_every": 3, "device": "cpu"}
    return ProxyBudget(**{**base, **kw})


def test_result_record(tiny):
    data = SyntheticMotion(SMALL)
    r = train_proxy(lambda: tiny.build("all_sep", num_classes=4), data, budget(eval_every=6))
    assert r.status == "ok" and r.steps_done == 12
    assert 0.0 <= r.accuracy <= 1.0 and r.top5 is None  # top-5 only with more than 5 classes
    assert set(r.per_class_accuracy) == {"square", "disk", "right", "left"}
    # per-class accuracies average to top-1 on a balanced held-out set (11 clips per class)
    assert abs(sum(r.per_class_accuracy.values()) / 4 - r.accuracy) < 1e-6
    assert [s for s, _ in r.loss_curve] == [3, 6, 9, 12]
    assert [s for s, _ in r.eval_curve] == [6, 12]
    assert r.clips_per_s > 0 and r.wall_time_s >= r.train_time_s > 0 and r.device == "cpu"
    json.dumps(r.to_dict())


def test_top5_with_many_classes(tiny):
    data = SyntheticMotion(SyntheticConfig(frames=8, size=16, eval_clips=22))
    r = train_proxy(lambda: tiny.build("all_2d", num_classes=data.num_classes), data, budget(steps=2))
    assert r.top5 is not None and r.top5 >= r.accuracy


def test_deterministic_on_cpu_for_a_seed(tiny):
    data = SyntheticMotion(SMALL)
    runs = [train_proxy(lambda: tiny.build("all_3d", num_classes=4), data, budget(seed=s)) for s in (1, 1, 2)]
    assert runs[0].loss_curve == runs[1].loss_curve and runs[0].per_class_accuracy == runs[1].per_class_accuracy
    assert runs[0].loss_curve != runs[2].loss_curve


def test_learns_something(tiny):
    """Appearance classes are learnable by any placement: above chance after a short run."""
    data = SyntheticMotion(
        SyntheticConfig(frames=8, size=24, eval_clips=60, classes=("square", "disk"), difficulty=0.0)
    )
    r = train_proxy(lambda: tiny.build("all_2d", num_classes=2), data, budget(steps=40, batch_size=16))
    assert r.accuracy > 0.8


def test_callback_can_stop_a_run(tiny):
    data = SyntheticMotion(SMALL)
    seen = []

    def cb(step, ev):
        seen.append((step, ev.top1))
        return step >= 4

    r = train_proxy(lambda: tiny.build("all_2d", num_classes=4), data, budget(eval_every=2), callback=cb)
    assert r.status == "stopped" and r.steps_done == 4 and [s for s, _ in seen] == [2, 4]
    assert r.accuracy == seen[-1][1]


def test_diverging_run_stops_at_once(tiny):
    data = SyntheticMotion(SMALL)
    r = train_proxy(
        lambda: tiny.build("all_3d", num_classes=4),
        data,
        budget(steps=50, lr=1e6, optimizer="sgd", warmup_steps=0, log_every=1),
    )
    assert r.status == "diverged" and r.steps_done < 50 and "loss" in r.reason
    assert r.accuracy is None


class _Exploding(nn.Module):
    """A model whose forward pass runs out of memory (as a too-large model does on a GPU)."""

    def __init__(self, exc: Exception) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.exc = exc

    def forward(self, x):
        raise self.exc


def test_out_of_memory_is_a_result_not_a_crash():
    data = SyntheticMotion(SMALL)
    r = train_proxy(
        _Exploding(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")), data, budget()
    )
    assert r.status == "out_of_memory" and "out of memory" in r.reason


def test_other_failures_are_recorded():
    data = SyntheticMotion(SMALL)
    r = train_proxy(_Exploding(ValueError("shapes do not match")), data, budget())
    assert r.status == "failed" and "ValueError: shapes do not match" in r.reason


def test_real_cpu_allocation_failure_is_out_of_memory(tiny):
    """A genuinely impossible allocation (CPU) is reported as out of memory."""
    data = SyntheticMotion(SMALL)

    class Huge(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return torch.empty(1 << 62, dtype=torch.uint8) + self.w

    r = train_proxy(Huge(), data, budget())
    assert r.status == "out_of_memory", r.reason


def test_bad_budget():
    from placement_search import UserError

    for kw in ({"steps": 0}, {"lr": -1.0}, {"optimizer": "lbfgs"}, {"eval_every": -1}):
        with pytest.raises(UserError):
            ProxyBudget(**kw)


def test_seeds_out_of_range_are_user_errors():
    from placement_search import UserError

    with pytest.raises(UserError, match="seed"):
        ProxyBudget(seed=-1)
    with pytest.raises(UserError, match="seed"):
        SyntheticConfig(seed=2**63)
