"""Cost measurement: the counting convention, meta vs real tensors, the whole-space tables."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from placement_search import load_space, measure, meta_build
from placement_search.cost import count_macs


def test_single_conv_by_formula():
    conv = nn.Conv3d(8, 16, (3, 5, 5), stride=(1, 2, 2), padding=(1, 2, 2), bias=True)
    params, macs, out = count_macs(conv, (1, 8, 6, 20, 20))
    assert out == (1, 16, 6, 10, 10)
    assert params == 16 * 8 * 75 + 16
    assert macs == (6 * 10 * 10 * 16) * (8 * 75)  # one MAC per output element per weight


def test_grouped_conv_and_linear():
    conv = nn.Conv3d(8, 8, 3, padding=1, groups=4, bias=False)
    _, macs, _ = count_macs(conv, (1, 8, 2, 4, 4))
    assert macs == (8 * 2 * 4 * 4) * (2 * 27)
    _, macs, _ = count_macs(nn.Linear(10, 3), (1, 10))
    assert macs == 30


def test_norms_pools_and_activations_cost_nothing():
    m = nn.Sequential(nn.BatchNorm3d(4), nn.ReLU(), nn.MaxPool3d(2), nn.AdaptiveAvgPool3d(1))
    params, macs, _ = count_macs(m, (1, 4, 4, 8, 8))
    assert (params, macs) == (8, 0)


@pytest.mark.parametrize("name", ["mc3", "r2plus1d"])
def test_meta_count_equals_count_on_real_tensors(name):
    """Shape propagation on the meta device gives what a real forward pass gives."""
    space = load_space("resnet18")
    placement = space.resolve(name)
    real = space.build(placement, num_classes=10).eval()
    meta = meta_build(space.build, placement, num_classes=10)
    shape = (1, 3, 4, 32, 32)
    a, b = measure(real, shape), measure(meta, shape)
    assert (a.params, a.macs) == (b.params, b.macs)
    assert a.macs > 0


def test_flops_are_twice_macs_and_breakdown_adds_up():
    space = load_space("inception")
    cost = space.cost("s3d_g", frames=16, size=224)
    assert cost.flops == 2 * cost.macs
    assert sum(c.macs for c in cost.per_position.values()) + cost.fixed.macs == cost.macs
    assert sum(c.params for c in cost.per_position.values()) + cost.fixed.params == cost.params
    assert sum(layer.macs for layer in cost.layers) == cost.macs
    d = cost.to_dict(per_layer=True)
    assert d["flops"] == 2 * d["macs"] and d["input"] == [1, 3, 16, 224, 224]


def test_position_breakdown_isolates_the_changed_position():
    """Changing one position's op changes that position's cost and nothing else's
    (inception: strides are fixed, so positions cost independently)."""
    space = load_space("inception")
    a = space.cost("all_2d", frames=16, size=224)
    b = space.cost(space.from_group_tokens(["2d"] * 4 + ["3d"] + ["2d"] * 6), frames=16, size=224)
    changed = [p for p in a.per_position if a.per_position[p] != b.per_position[p]]
    assert changed == ["mixed_4b"]
    # the 3d position adds exactly the weights of its two 3x3 convs' temporal taps (x2 more)
    # mixed_4b: 96 -> 208 and 16 -> 48, 3x3 kernels, at 16/2/2 = 4 frames of 14x14
    extra_weights = 2 * (96 * 208 * 9 + 16 * 48 * 9)
    assert b.params - a.params == extra_weights
    assert b.macs - a.macs == extra_weights * 4 * 14 * 14


@pytest.mark.parametrize(
    ("space_name", "frames", "size"), [("tiny", 8, 32), ("resnet18", 16, 112), ("inception", 16, 224)]
)
def test_tables_agree_with_building_every_sampled_placement(space_name, frames, size):
    space = load_space(space_name)
    costs = space.costs(frames=frames, size=size, num_classes=10)
    rng = np.random.default_rng(0)
    for index in [0, costs.size - 1, *rng.integers(0, costs.size, 6).tolist()]:
        p = costs.placement(int(index))
        assert costs.index(p) == index
        full = space.cost(p, frames=frames, size=size, num_classes=10)
        assert costs.cost(p) == (full.macs, full.params)


def test_tables_when_temporal_strides_depend_on_the_placement():
    """resnet18 with torchvision's rule: a stage halves time only if its first conv is
    temporal, so later positions' costs depend on earlier choices; the tables follow."""
    space = load_space("resnet18")
    costs = space.costs(frames=16, size=112)
    # all layer2-4 convs 2D: T stays 16 there; all 3D: T = 8, 4, 2. Compare one known pair.
    r3d, mc3 = costs.cost(space.resolve("r3d")), costs.cost(space.resolve("mc3"))
    assert r3d[0] == space.cost("r3d").macs and mc3[0] == space.cost("mc3").macs


def test_count_within_budget_matches_brute_force(tmp_path):
    path = tmp_path / "small.toml"
    path.write_text(
        'schema_version = 1\nname = "small"\nbackbone = "tiny"\ntie = "block"\n'
        'choices = ["2d", "3d", "sep"]\n[backbone_args]\ntemporal_stride = "by_op"\n'
    )
    space = load_space(str(path))
    costs = space.costs(frames=8, size=32, num_classes=10)
    macs_all = []
    for tokens in itertools.product(*(g.tokens for g in space.groups)):
        macs_all.append(space.cost(space.from_group_tokens(tokens), frames=8, size=32, num_classes=10).macs)
    macs_all = np.array(macs_all)
    assert len(macs_all) == costs.size == 3**5
    for budget in np.quantile(macs_all, [0.0, 0.1, 0.5, 0.9, 1.0]).astype(np.int64).tolist():
        assert costs.count_within(max_macs=budget) == int((macs_all <= budget).sum())
    summary = costs.summary()
    assert summary["min_macs"] == macs_all.min() and summary["max_macs"] == macs_all.max()


def test_enumeration_refuses_huge_spaces_with_advice(tmp_path):
    from placement_search import UserError
    from placement_search.space import load_space as load

    path = tmp_path / "big.toml"
    path.write_text(
        'schema_version = 1\nname = "big"\nbackbone = "resnet"\ntie = "none"\n'
        'choices = ["2d", "3d", "sep", "2plus1d"]\nkt = [3, 5]\n[backbone_args]\ndepth = 34\n'
    )
    space = load(path)
    assert space.size == 7 ** (1 + 2 * 16)
    with pytest.raises(UserError, match="tie positions"):
        space.costs().count_within(max_macs=10**10)


def test_latency_is_measured():
    from placement_search import measure_latency

    space = load_space("tiny")
    lat = measure_latency(space.build("all_sep", num_classes=5), (1, 3, 4, 32, 32), runs=2, warmup=1)
    assert lat.median_ms > 0 and lat.clips_per_s > 0 and lat.device == "cpu"


def test_families_cost_grows_with_temporal_layers():
    """Adding temporal taps never removes multiply-adds when strides are fixed (inception)."""
    space = load_space("inception")
    costs = space.costs(frames=64, size=224)
    bottom = [costs.cost(space.family("bottom_heavy", k))[0] for k in range(len(space.groups) + 1)]
    top = [costs.cost(space.family("top_heavy", k))[0] for k in range(len(space.groups) + 1)]
    assert bottom == sorted(bottom) and top == sorted(top, reverse=True)
    assert bottom[0] == top[-1] and bottom[-1] == top[0]
    assert torch.tensor(bottom).unique().numel() == len(bottom)
