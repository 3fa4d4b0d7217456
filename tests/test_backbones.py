"""Every op kind at every position of every backbone builds and trains (forward + backward)."""

from __future__ import annotations

import random

import pytest
import torch
from torch import nn

from placement_search import OP_KINDS, load_space
from placement_search.backbones import InceptionArgs, InceptionBackbone
from placement_search.placement import Choice

# small clips each backbone accepts (inception needs 8 frames and 32 px to reach its last pool)
SMALL = {"tiny": (4, 32), "resnet18": (4, 32), "resnet34": (4, 32), "inception": (8, 32)}
SPACES = sorted(SMALL)


def train_step(model: nn.Module, frames: int, size: int, classes: int = 5) -> None:
    model.train()
    x = torch.randn(2, 3, frames, size, size)
    y = model(x)
    assert y.shape == (2, classes)
    loss = nn.functional.cross_entropy(y, torch.tensor([0, 1]))
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("space_name", SPACES)
@pytest.mark.parametrize("kind", sorted(OP_KINDS))
def test_every_kind_at_every_position(space_name, kind):
    """all_<kind> puts the kind at every position, strided ones included."""
    torch.manual_seed(0)
    space = load_space(space_name)
    model = space.build(f"all_{kind}", num_classes=5)
    train_step(model, *SMALL[space_name])


@pytest.mark.parametrize("space_name", SPACES)
def test_random_mixed_placements(space_name):
    space = load_space(space_name)
    rng = random.Random(space_name)
    for _ in range(2):
        tokens = [rng.choice(g.tokens) for g in space.groups]
        model = space.build(space.from_group_tokens(tokens), num_classes=5)
        train_step(model, *SMALL[space_name])


@pytest.mark.parametrize("name", ["i3d", "s3d", "s3d_g"])
def test_published_inception_variants_train(name):
    space = load_space("inception")
    train_step(space.build(name, num_classes=5), 8, 32)


def test_untied_resnet_positions_mix_inside_a_block():
    """Each conv of a block is its own position: a 2D conv1 and a 3D conv2 in one block."""
    from placement_search.backbones import ResNetBackbone

    backbone = ResNetBackbone()
    rng = random.Random(1)
    choices = {p.name: Choice(rng.choice(["2d", "3d", "sep", "2plus1d"]), 1) for p in backbone.positions()}
    choices = {k: (v if v.op == "2d" else Choice(v.op, 3)) for k, v in choices.items()}
    model = backbone.build(choices, num_classes=5)
    train_step(model, 4, 32)


def test_inception_branch_positions_and_gating():
    backbone = InceptionBackbone(InceptionArgs(branch_positions=True, gating=True))
    names = [p.name for p in backbone.positions()]
    assert names[:4] == ["conv1", "conv2c", "mixed_3b.b1", "mixed_3b.b2"] and len(names) == 2 + 2 * 9
    choices = {n: (Choice("3d", 3) if n.endswith("b1") else Choice("sep", 3)) for n in names}
    choices["conv1"] = Choice("2d")
    model = backbone.build(choices, num_classes=5)
    block = model.features.mixed_3b
    assert block.branch1[1][0].kernel_size == (3, 3, 3)  # 3d in branch 1
    assert [c.kernel_size for c in block.branch2[1][0] if isinstance(c, nn.Conv3d)] == [(1, 3, 3), (3, 1, 1)]
    train_step(model, 8, 32)


def test_gating_is_sigmoid_of_a_linear_map_of_the_mean():
    from placement_search.backbones.inception import SelfGating

    g = SelfGating(4, bias=True)
    x = torch.randn(2, 4, 3, 5, 5)
    w = torch.sigmoid(x.mean(dim=(2, 3, 4)) @ g.fc.weight.T + g.fc.bias)
    torch.testing.assert_close(g(x), x * w[:, :, None, None, None])


def test_gating_placement_follows_s3dg():
    """s3dg.py gates conv2c and each of the four branches of every Mixed block; not conv1."""
    from placement_search.backbones.inception import SelfGating

    model = load_space("inception").build("s3d_g")
    gates = [n for n, m in model.named_modules() if isinstance(m, SelfGating)]
    assert len(gates) == 1 + 4 * 9
    assert sum(n.startswith("features.conv2c.") for n in gates) == 1
    assert not any(n.startswith(("features.conv1.", "features.conv2b.")) for n in gates)
    for block in ("mixed_3b", "mixed_5c"):
        assert sorted(n.split(".")[2] for n in gates if n.startswith(f"features.{block}.")) == [
            "branch0",
            "branch1",
            "branch2",
            "branch3",
        ]


def test_tf_same_padding_matches_tensorflow_sizes():
    """TensorFlow "SAME": output = ceil(n / stride), extra padding at the end."""
    from placement_search.ops import Conv3dSame, MaxPool3dSame

    conv = Conv3dSame(1, 1, (1, 7, 7), stride=(1, 2, 2), bias=False)
    assert conv(torch.zeros(1, 1, 1, 15, 15)).shape[-1] == 8  # PyTorch padding 3 gives 8 too
    pool = MaxPool3dSame((2, 2, 2), (2, 2, 2))
    assert pool(torch.zeros(1, 1, 5, 15, 15)).shape[-3:] == (3, 8, 8)  # PyTorch (no pad) gives 2, 7
    # padded cells never win a max: all-negative input keeps its values
    y = pool(-torch.ones(1, 1, 1, 3, 3) - torch.arange(9.0).view(1, 1, 1, 3, 3))
    assert (y < 0).all()


def test_offset_only_batch_norm_has_no_scale():
    model = load_space("inception").build("i3d")
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm3d)]
    assert bns and all(m.weight is None and m.bias is not None for m in bns)


def test_clip_too_small_is_a_clear_error():
    from placement_search import UserError

    space = load_space("inception")
    with pytest.raises(UserError, match="too small"):
        space.cost("s3d", frames=2, size=16)
