"""The synthetic motion benchmark: deterministic, and built so that time is needed."""

from __future__ import annotations

import pytest
import torch

from placement_search.data import CLASSES, FAMILIES, SyntheticConfig, SyntheticMotion, make_data
from placement_search.data.synthetic import render_clips
from placement_search.errors import UserError

C = {name: i for i, name in enumerate(CLASSES)}


def test_classes_and_families():
    assert len(CLASSES) == len(set(CLASSES)) == sum(len(v) for v in FAMILIES.values())
    assert set(FAMILIES) == {"appearance", "direction", "fine_motion", "events"}


def test_clip_depends_only_on_seed_and_index():
    cfg = SyntheticConfig(frames=8, size=24)
    labels = torch.arange(10) % len(CLASSES)
    batch = render_clips(cfg, torch.arange(10), labels, 123)
    alone = render_clips(cfg, torch.tensor([7]), labels[7:8], 123)
    assert torch.equal(batch[7], alone[0])
    assert not torch.equal(
        render_clips(SyntheticConfig(frames=8, size=24, seed=1), torch.tensor([7]), labels[7:8], 123)[0], alone[0]
    )
    assert batch.shape == (10, 3, 8, 24, 24) and batch.dtype == torch.float32
    assert 0 <= batch.min() and batch.max() <= 1


def test_any_clip_size():
    for frames, size in [(8, 16), (12, 40), (32, 64)]:
        x = render_clips(SyntheticConfig(frames=frames, size=size), torch.arange(4), torch.arange(4), 1)
        assert x.shape == (4, 3, frames, size, size)


@pytest.mark.parametrize(("a", "b"), [("right", "left"), ("down", "up")])
def test_reversed_clip_is_the_opposite_class(a, b):
    """At difficulty 0 (no noise, no distractors) class a's clip played backwards is
    exactly class b's clip with the same parameters: an order-blind model cannot tell."""
    cfg = SyntheticConfig(frames=16, size=32, difficulty=0.0)
    index = torch.arange(16)
    xa = render_clips(cfg, index, torch.full((16,), C[a]), 5)
    xb = render_clips(cfg, index, torch.full((16,), C[b]), 5)
    torch.testing.assert_close(xa.flip(2), xb)
    assert (xa - xb).abs().amax() > 0.3  # while forward they differ


def _colour_frames(x: torch.Tensor, rgb: tuple[float, float, float]) -> torch.Tensor:
    """Per clip and frame: does a pixel close to colour rgb exist?  (N, T) bool"""
    target = torch.tensor(rgb)[None, :, None, None, None]
    return ((x - target).abs().amax(1) < 0.2).flatten(2).any(2)


@pytest.mark.parametrize("name", ["a_then_b", "b_then_a", "together"])
def test_event_order(name):
    """The red square (A) and the blue disk (B) each flash once; the class is their order."""
    cfg = SyntheticConfig(frames=16, size=32, difficulty=0.0)
    x = render_clips(cfg, torch.arange(32), torch.full((32,), C[name]), 3)
    red, blue = _colour_frames(x, (0.95, 0.15, 0.1)), _colour_frames(x, (0.15, 0.3, 0.95))
    assert red.any(1).all() and blue.any(1).all()
    onset_a = red.float().argmax(1)
    onset_b = blue.float().argmax(1)
    if name == "a_then_b":
        assert (red.long().sum(1) > 0).all() and (onset_a < onset_b).all() and (red & blue).sum() == 0
    elif name == "b_then_a":
        assert (onset_b < onset_a).all() and (red & blue).sum() == 0
    else:
        assert (onset_a == onset_b).all()


def test_training_stream_and_eval_set():
    data = SyntheticMotion(SyntheticConfig(frames=8, size=16, eval_clips=55))
    dev = torch.device("cpu")
    a = next(data.train_batches(8, seed=3, device=dev))
    b = next(data.train_batches(8, seed=3, device=dev))
    c = next(data.train_batches(8, seed=4, device=dev))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[0], c[0])
    ev = list(data.eval_batches(20, device=dev))
    ys = torch.cat([y for _, y in ev])
    assert len(ys) == 55 == data.eval_size
    counts = torch.bincount(ys, minlength=data.num_classes)
    assert counts.max() - counts.min() <= 1  # balanced
    again = torch.cat([x for x, _ in data.eval_batches(55, device=dev)])
    assert torch.equal(torch.cat([x for x, _ in ev]), again)  # batching does not change clips
    # normalised: roughly zero-mean, unit-scale
    x = torch.cat([x for x, _ in ev])
    assert abs(float(x.mean())) < 1 and 0.2 < float(x.std()) < 3


def test_class_subset():
    data = SyntheticMotion(SyntheticConfig(classes=("right", "left"), eval_clips=10, frames=8, size=16))
    assert data.class_names == ["right", "left"] and data.num_classes == 2
    _, y = next(data.train_batches(16, seed=0, device=torch.device("cpu")))
    assert set(y.tolist()) <= {0, 1}


@pytest.mark.parametrize(
    "kwargs", [{"frames": 4}, {"size": 8}, {"difficulty": 1.5}, {"classes": ("nope",)}, {"eval_clips": 3}]
)
def test_bad_config(kwargs):
    with pytest.raises(UserError):
        SyntheticConfig(**kwargs)


def test_make_data():
    assert isinstance(make_data("synthetic", frames=8, size=16), SyntheticMotion)
    with pytest.raises(UserError, match="neither 'synthetic'"):
        make_data("/no/such/folder")


def test_large_clips_render():
    """Clips larger than the default noise table (2^20 values) still render."""
    x = render_clips(SyntheticConfig(frames=64, size=132), torch.arange(2), torch.arange(2), 1)
    assert x.shape == (2, 3, 64, 132, 132) and torch.isfinite(x).all()
