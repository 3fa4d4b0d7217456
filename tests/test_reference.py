"""The builder reproduces published models layer for layer.

Expected numbers come from tests/reference_counts.py, which derives them by hand from the
published layouts (torchvision's resnet.py and s3d.py, DeepMind's i3d.py, TF-slim's
s3dg.py) and shares no code with the builder, and from the numbers torchvision publishes.
"""

from __future__ import annotations

import pytest
import reference_counts as ref
import torch

from placement_search import load_space

CLIPS = [(16, 112), (8, 64), (15, 113), (32, 160)]
BIG_CLIPS = [(16, 224), (64, 224), (17, 230)]


@pytest.fixture(scope="module")
def resnet18():
    return load_space("resnet18")


@pytest.fixture(scope="module")
def inception():
    return load_space("inception")


@pytest.mark.parametrize(
    ("name", "reference"), [("r3d", ref.r3d_18), ("mc3", ref.mc3_18), ("r2plus1d", ref.r2plus1d_18)]
)
@pytest.mark.parametrize(("frames", "size"), CLIPS)
def test_torchvision_video_resnets(resnet18, name, reference, frames, size):
    cost = resnet18.cost(name, frames=frames, size=size)
    expected = reference(frames=frames, size=size)
    assert (cost.params, cost.macs) == (expected["params"], expected["macs"])


@pytest.mark.parametrize(("name", "tv"), [("r3d", "r3d_18"), ("mc3", "mc3_18"), ("r2plus1d", "r2plus1d_18")])
def test_published_torchvision_numbers_resnets(resnet18, name, tv):
    published = ref.TORCHVISION_PUBLISHED[tv]
    frames, size = ref.PUBLISHED_OPS_CLIP[tv]
    cost = resnet18.cost(name, frames=frames, size=size)
    assert cost.params == published["num_params"]
    # torchvision's "GFLOPS" are GMACs of conv + linear layers
    assert round(cost.macs / 1e9, 3) == published["_ops"]


@pytest.mark.parametrize(("frames", "size"), BIG_CLIPS)
def test_torchvision_s3d(inception, frames, size):
    cost = inception.cost("s3d", frames=frames, size=size)
    expected = ref.s3d(frames=frames, size=size)
    assert (cost.params, cost.macs) == (expected["params"], expected["macs"])


def test_published_torchvision_s3d(inception):
    frames, size = ref.PUBLISHED_OPS_CLIP["s3d"]
    cost = inception.cost("s3d", frames=frames, size=size)
    assert cost.params == ref.TORCHVISION_PUBLISHED["s3d"]["num_params"]
    assert round(cost.macs / 1e9, 3) == ref.TORCHVISION_PUBLISHED["s3d"]["_ops"]


@pytest.mark.parametrize(("frames", "size"), BIG_CLIPS)
def test_deepmind_i3d(inception, frames, size):
    cost = inception.cost("i3d", frames=frames, size=size)
    expected = ref.i3d(frames=frames, size=size, bn_scale=False)
    assert (cost.params, cost.macs) == (expected["params"], expected["macs"])


def test_all_3d_is_i3d_with_pytorch_batch_norm(inception):
    # the space's own convention (BN with scale) gives the usual PyTorch port of I3D
    cost = inception.cost("all_3d", frames=64, size=224)
    expected = ref.i3d(frames=64, size=224, bn_scale=True)
    assert (cost.params, cost.macs) == (expected["params"], expected["macs"])


@pytest.mark.parametrize(("frames", "size"), [(64, 224), (16, 224)])
def test_published_s3d_g(inception, frames, size):
    cost = inception.cost("s3d_g", frames=frames, size=size)
    expected = ref.s3d_g(frames=frames, size=size)
    assert (cost.params, cost.macs) == (expected["params"], expected["macs"])


@pytest.mark.parametrize("classes", [10, 101, 400])
def test_class_count_changes_only_the_classifier(resnet18, classes):
    cost = resnet18.cost("r3d", frames=16, size=112, num_classes=classes)
    expected = ref.r3d_18(frames=16, size=112, num_classes=classes)
    assert (cost.params, cost.macs) == (expected["params"], expected["macs"])


def test_temporal_downsampling_follows_torchvision(resnet18):
    """R3D halves time at each of layer2-4 (Conv3DSimple); MC3's 2D stages keep every
    frame (Conv3DNoTemporal.get_downsample_stride); R(2+1)D halves it like R3D."""
    x = torch.randn(1, 3, 16, 32, 32)
    frames = {}
    for name in ("r3d", "mc3", "r2plus1d", "rmc3"):
        model = resnet18.build(name).eval()
        with torch.no_grad():
            frames[name] = model.forward_features(x).shape[2]
    assert frames == {"r3d": 2, "mc3": 16, "r2plus1d": 2, "rmc3": 2}


def test_r2plus1d_middle_widths_are_torchvision_quirks(resnet18):
    model = resnet18.build("r2plus1d")
    # R2Plus1dStem: 3 -> 45 -> 64
    assert model.stem[0].out_channels == 45 and model.stem[3].in_channels == 45
    # first block of layer2: midplanes from (inplanes=64, planes=128) for BOTH convs = 230
    block = model.layer2[0]
    assert block.conv1[0][0].out_channels == (64 * 128 * 27) // (64 * 9 + 3 * 128) == 230
    assert block.conv2[0][0].out_channels == 230
    # second block: (128, 128) -> 288
    assert model.layer2[1].conv1[0][0].out_channels == (128 * 128 * 27) // (128 * 9 + 3 * 128) == 288
