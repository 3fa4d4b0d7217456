"""Independent, hand-derived parameter and MAC counts for reference video networks.

These numbers are derived *only* from the published layouts of

* torchvision ``torchvision/models/video/resnet.py`` (r3d_18, mc3_18, r2plus1d_18),
* torchvision ``torchvision/models/video/s3d.py`` (s3d),
* DeepMind ``kinetics-i3d`` ``i3d.py`` (``InceptionI3d``),

and are meant to be compared against the project's model builder in tests.  They
deliberately share no code with the builder.  Pure Python: no torch, no numpy.

Conventions
-----------
* ``params``: every trainable tensor (conv weights, conv biases, batch-norm
  weight/bias, linear weight/bias).  Running statistics are buffers, not params.
* ``macs``: multiply-accumulates of Conv3d and Linear layers only, batch size 1.
  Batch norm, ReLU, pooling, residual adds, concatenation and the final mean are
  NOT counted.  A bias add is not a MAC.
* Shapes are ``(C, T, H, W)``; ``frames`` is T and ``size`` is both H and W.

Published numbers and the clip size they correspond to
------------------------------------------------------
torchvision's ``_ops`` meta field is labelled GFLOPS, but it equals this file's
conv+linear MACs / 1e9 (one multiply-accumulate = one op, batch norm etc. not
counted), rounded to 3 decimals, at these clip sizes:

* r3d_18, mc3_18, r2plus1d_18: ``_ops`` == round(macs / 1e9, 3) at 16x112x112.
* s3d: ``_ops`` == round(macs / 1e9, 3) at 16x224x224.

``num_params`` matches exactly (it does not depend on the clip size).
"""

from __future__ import annotations

from collections.abc import Sequence

# ---------------------------------------------------------------------------
# Published reference numbers.
#
# r3d_18 / mc3_18 / r2plus1d_18:
#   torchvision/models/video/resnet.py, R3D_18_Weights.KINETICS400_V1.meta,
#   MC3_18_Weights.KINETICS400_V1.meta, R2Plus1D_18_Weights.KINETICS400_V1.meta
#   (num_params has been there since torchvision 0.13; "_ops" (GFLOPS) was added
#   in 0.15).  The docs page pytorch.org/vision/stable/models/generated/
#   torchvision.models.video.r3d_18.html shows "num_params 33371472, GFLOPS 40.70".
# s3d:
#   torchvision/models/video/s3d.py, S3D_Weights.KINETICS400_V1.meta
#   (docs page torchvision.models.video.s3d.html: "num_params 8320048,
#   GFLOPS 17.98"; min_size (224, 224), min_temporal_size 14).
# ---------------------------------------------------------------------------
TORCHVISION_PUBLISHED: dict[str, dict[str, int | float]] = {
    "r3d_18": {"num_params": 33371472, "_ops": 40.697, "_file_size": 127.359},
    "mc3_18": {"num_params": 11695440, "_ops": 43.343, "_file_size": 44.672},
    "r2plus1d_18": {"num_params": 31505325, "_ops": 40.519, "_file_size": 120.318},
    "s3d": {"num_params": 8320048, "_ops": 17.979, "_file_size": 31.972},
}

# The (frames, size) clip at which round(macs / 1e9, 3) equals the published
# "_ops" value (found by evaluating this file; see the __main__ block).
PUBLISHED_OPS_CLIP: dict[str, tuple[int, int]] = {
    "r3d_18": (16, 112),
    "mc3_18": (16, 112),
    "r2plus1d_18": (16, 112),
    "s3d": (16, 224),
}

Triple = tuple[int, int, int]
Shape = tuple[int, int, int, int]  # (C, T, H, W)
IntOr3 = int | Sequence[int]


# ---------------------------------------------------------------------------
# Arithmetic helpers
# ---------------------------------------------------------------------------
def triple(v: IntOr3) -> Triple:
    if isinstance(v, int):
        return (v, v, v)
    t = tuple(v)
    assert len(t) == 3, v
    return (int(t[0]), int(t[1]), int(t[2]))


def conv_out(n: int, k: int, s: int = 1, p: int = 0) -> int:
    """PyTorch Conv/Pool output length (floor mode): floor((n + 2p - k) / s) + 1."""
    out = (n + 2 * p - k) // s + 1
    if out < 1:
        raise ValueError(f"kernel {k} (pad {p}) larger than input {n}")
    return out


def same_out(n: int, s: int = 1) -> int:
    """TensorFlow 'SAME' padding output length: ceil(n / s)."""
    return -(-n // s)


def valid_out(n: int, k: int, s: int = 1) -> int:
    """TensorFlow 'VALID' padding output length: floor((n - k) / s) + 1."""
    return conv_out(n, k, s, 0)


def conv_params(cin: int, cout: int, k: IntOr3, groups: int = 1, bias: bool = False) -> int:
    kt, kh, kw = triple(k)
    return cout * (cin // groups) * kt * kh * kw + (cout if bias else 0)


def conv_macs(cin: int, cout: int, k: IntOr3, out_thw: Triple, groups: int = 1) -> int:
    kt, kh, kw = triple(k)
    t, h, w = out_thw
    return t * h * w * cout * (cin // groups) * kt * kh * kw


def bn_params(c: int, mode: str | None = "affine") -> int:
    """BatchNorm trainable params: 'affine' -> weight+bias (2C), 'offset' -> beta only (C)."""
    if mode is None:
        return 0
    return {"affine": 2 * c, "offset": c}[mode]


def linear_params(fin: int, fout: int, bias: bool = True) -> int:
    return fin * fout + (fout if bias else 0)


def linear_macs(fin: int, fout: int) -> int:
    return fin * fout


def out_thw(x: Shape, k: IntOr3, s: IntOr3, p: IntOr3 = 0, *, tf_same: bool = False) -> Triple:
    """(T, H, W) after a conv or pool: PyTorch floor arithmetic, or TF 'SAME'."""
    (kt, kh, kw), (st, sh, sw), (pt, ph, pw) = triple(k), triple(s), triple(p)
    _, t, h, w = x
    if tf_same:
        return (same_out(t, st), same_out(h, sh), same_out(w, sw))
    return (conv_out(t, kt, st, pt), conv_out(h, kh, sh, ph), conv_out(w, kw, sw, pw))


# ---------------------------------------------------------------------------
# A tiny tally that walks shapes through a network and accumulates counts.
# ---------------------------------------------------------------------------
class Tally:
    def __init__(self) -> None:
        self.params = 0
        self.macs = 0

    def conv(
        self,
        x: Shape,
        cout: int,
        k: IntOr3,
        s: IntOr3 = 1,
        p: IntOr3 = 0,
        *,
        bias: bool = False,
        bn: str | None = None,
        tf_same: bool = False,
    ) -> Shape:
        """Conv3d (+ optional BatchNorm3d). ``tf_same`` uses TF 'SAME' output sizes."""
        cin = x[0]
        t, h, w = out_thw(x, k, s, p, tf_same=tf_same)
        self.params += conv_params(cin, cout, k, bias=bias) + bn_params(cout, bn)
        self.macs += conv_macs(cin, cout, k, (t, h, w))
        return (cout, t, h, w)

    @staticmethod
    def pool(x: Shape, k: IntOr3, s: IntOr3, p: IntOr3 = 0, *, tf_same: bool = False) -> Shape:
        """MaxPool3d / AvgPool3d: only the shape changes."""
        return (x[0], *out_thw(x, k, s, p, tf_same=tf_same))

    def linear(self, fin: int, fout: int) -> None:
        self.params += linear_params(fin, fout)
        self.macs += linear_macs(fin, fout)

    def result(self) -> dict[str, int]:
        return {"params": self.params, "macs": self.macs}


# ---------------------------------------------------------------------------
# torchvision VideoResNet family (resnet.py)
# ---------------------------------------------------------------------------
# (planes, stride, num_blocks) for layer1..layer4
RESNET18_STAGES = ((64, 1, 2), (128, 2, 2), (256, 2, 2), (512, 2, 2))


def resnet_midplanes(inplanes: int, planes: int) -> int:
    """torchvision BasicBlock: computed from the BLOCK's inplanes, used by conv1 AND conv2."""
    return (inplanes * planes * 3 * 3 * 3) // (inplanes * 3 * 3 + 3 * planes)


def _resnet_conv(tl: Tally, x: Shape, cout: int, mid: int, stride: int, kind: str) -> Shape:
    """One conv_builder call (without its trailing BN, which the block adds)."""
    if kind == "3d":  # Conv3DSimple
        return tl.conv(x, cout, 3, stride, 1)
    if kind == "2d":  # Conv3DNoTemporal
        return tl.conv(x, cout, (1, 3, 3), (1, stride, stride), (0, 1, 1))
    if kind == "2+1d":  # Conv2Plus1D: (1,3,3) -> BN(mid) -> ReLU -> (3,1,1)
        x = tl.conv(x, mid, (1, 3, 3), (1, stride, stride), (0, 1, 1), bn="affine")
        return tl.conv(x, cout, (3, 1, 1), (stride, 1, 1), (1, 0, 0))
    raise ValueError(kind)


def _video_resnet18(stem: str, layer_kinds: Sequence[str], frames: int, size: int, num_classes: int) -> dict[str, int]:
    tl = Tally()
    x: Shape = (3, frames, size, size)
    if stem == "basic":  # BasicStem
        x = tl.conv(x, 64, (3, 7, 7), (1, 2, 2), (1, 3, 3), bn="affine")
    else:  # R2Plus1dStem, 45 middle channels
        x = tl.conv(x, 45, (1, 7, 7), (1, 2, 2), (0, 3, 3), bn="affine")
        x = tl.conv(x, 64, (3, 1, 1), 1, (1, 0, 0), bn="affine")

    for (planes, stride, blocks), kind in zip(RESNET18_STAGES, layer_kinds):
        for b in range(blocks):
            s = stride if b == 0 else 1
            inplanes = x[0]
            mid = resnet_midplanes(inplanes, planes)
            identity = x
            y = _resnet_conv(tl, x, planes, mid, s, kind)
            tl.params += bn_params(planes)
            y = _resnet_conv(tl, y, planes, mid, 1, kind)
            tl.params += bn_params(planes)
            if s != 1 or inplanes != planes:  # downsample: 1x1x1 conv + BN
                ds_stride = (1, s, s) if kind == "2d" else (s, s, s)
                ds = tl.conv(identity, planes, 1, ds_stride, 0, bn="affine")
                assert ds == y, (ds, y)
            x = y

    # AdaptiveAvgPool3d(1) -> flatten -> Linear(512, num_classes)
    tl.linear(x[0], num_classes)
    return tl.result()


def r3d_18(*, frames: int = 16, size: int = 112, num_classes: int = 400) -> dict[str, int]:
    return _video_resnet18("basic", ["3d"] * 4, frames, size, num_classes)


def mc3_18(*, frames: int = 16, size: int = 112, num_classes: int = 400) -> dict[str, int]:
    return _video_resnet18("basic", ["3d"] + ["2d"] * 3, frames, size, num_classes)


def r2plus1d_18(*, frames: int = 16, size: int = 112, num_classes: int = 400) -> dict[str, int]:
    return _video_resnet18("r2plus1d", ["2+1d"] * 4, frames, size, num_classes)


# ---------------------------------------------------------------------------
# Inception-v1 backbone shared by S3D and I3D.
# Mixed rows: (name, b0_out, b1_mid, b1_out, b2_mid, b2_out, b3_out)
# Pool rows:  (name, kernel, stride)
# ---------------------------------------------------------------------------
INCEPTION_V1_BODY = (
    ("Mixed_3b", 64, 96, 128, 16, 32, 32),
    ("Mixed_3c", 128, 128, 192, 32, 96, 64),
    ("MaxPool3d_4a_3x3", (3, 3, 3), (2, 2, 2)),
    ("Mixed_4b", 192, 96, 208, 16, 48, 64),
    ("Mixed_4c", 160, 112, 224, 24, 64, 64),
    ("Mixed_4d", 128, 128, 256, 24, 64, 64),
    ("Mixed_4e", 112, 144, 288, 32, 64, 64),
    ("Mixed_4f", 256, 160, 320, 32, 128, 128),
    ("MaxPool3d_5a_2x2", (2, 2, 2), (2, 2, 2)),
    ("Mixed_5b", 256, 160, 320, 32, 128, 128),
    ("Mixed_5c", 384, 192, 384, 48, 128, 128),
)


def _s3d_sep_conv(tl: Tally, x: Shape, cout: int, k: int, s: int, p: int) -> Shape:
    """torchvision TemporalSeparableConv: (1,k,k)/(1,s,s) + BN + ReLU, then (k,1,1)/(s,1,1) + BN + ReLU."""
    x = tl.conv(x, cout, (1, k, k), (1, s, s), (0, p, p), bn="affine")
    return tl.conv(x, cout, (k, 1, 1), (s, 1, 1), (p, 0, 0), bn="affine")


def s3d(*, frames: int = 16, size: int = 224, num_classes: int = 400) -> dict[str, int]:
    """torchvision S3D.

    Limit: AvgPool3d((2, 7, 7), stride 1) must fit the Mixed_5c map (H5 >= 7, T5 >= 2),
    which with PyTorch's floor arithmetic means size >= 209 and frames >= 13.
    torchvision documents min_size 224 and min_temporal_size 14; only use it with
    size >= 224, frames >= 14.  A ValueError is raised when the pool does not fit.
    """
    tl = Tally()
    bn = "affine"
    x: Shape = (3, frames, size, size)
    x = _s3d_sep_conv(tl, x, 64, 7, 2, 3)
    x = tl.pool(x, (1, 3, 3), (1, 2, 2), (0, 1, 1))
    x = tl.conv(x, 64, 1, bn=bn)
    x = _s3d_sep_conv(tl, x, 192, 3, 1, 1)
    x = tl.pool(x, (1, 3, 3), (1, 2, 2), (0, 1, 1))
    for row in INCEPTION_V1_BODY:
        if len(row) == 3:  # MaxPool3d (3,3,3)/2/pad 1 and (2,2,2)/2/pad 0
            _, k, s = row
            x = tl.pool(x, k, s, 1 if k == (3, 3, 3) else 0)
            continue
        _, b0, b1m, b1, b2m, b2, b3 = row
        y0 = tl.conv(x, b0, 1, bn=bn)
        y1 = _s3d_sep_conv(tl, tl.conv(x, b1m, 1, bn=bn), b1, 3, 1, 1)
        y2 = _s3d_sep_conv(tl, tl.conv(x, b2m, 1, bn=bn), b2, 3, 1, 1)
        y3 = tl.conv(tl.pool(x, 3, 1, 1), b3, 1, bn=bn)
        assert y0[1:] == y1[1:] == y2[1:] == y3[1:] == x[1:]
        x = (b0 + b1 + b2 + b3, x[1], x[2], x[3])
    x = tl.pool(x, (2, 7, 7), 1, 0)  # AvgPool3d((2,7,7), stride=1)
    # Dropout, then Conv3d(1024, num_classes, 1, bias=True) at (T', H', W'); mean afterwards.
    tl.conv(x, num_classes, 1, bias=True)
    return tl.result()


# ---------------------------------------------------------------------------
# DeepMind I3D (kinetics-i3d, i3d.py, InceptionI3d).  All convs/pools use TF
# 'SAME' padding (out = ceil(n / stride)) except the Logits AvgPool (VALID).
# Unit3D = conv (no bias) + snt.BatchNorm + ReLU.  Sonnet 1's BatchNorm default
# is offset=True, scale=False: only beta (C params).  bn_scale=True counts
# gamma too (2C), as in the usual PyTorch ports with affine BatchNorm3d.
# ---------------------------------------------------------------------------
def i3d(*, frames: int = 64, size: int = 224, num_classes: int = 400, bn_scale: bool = False) -> dict[str, int]:
    """DeepMind InceptionI3d up to Logits (RGB stream, 3 input channels).

    Limit: the Logits AvgPool [2,7,7] VALID needs T5 = ceil(frames/8) >= 2 and
    H5 = ceil(size/32) >= 7 (frames >= 9, size >= 193); the original code
    additionally insists on 224x224 inputs.
    """
    tl = Tally()
    bn = "affine" if bn_scale else "offset"
    x: Shape = (3, frames, size, size)

    def unit(x: Shape, cout: int, k: IntOr3, s: IntOr3 = 1) -> Shape:
        return tl.conv(x, cout, k, s, bn=bn, tf_same=True)

    x = unit(x, 64, 7, 2)  # Conv3d_1a_7x7
    x = tl.pool(x, (1, 3, 3), (1, 2, 2), tf_same=True)  # MaxPool3d_2a_3x3
    x = unit(x, 64, 1)  # Conv3d_2b_1x1
    x = unit(x, 192, 3)  # Conv3d_2c_3x3
    x = tl.pool(x, (1, 3, 3), (1, 2, 2), tf_same=True)  # MaxPool3d_3a_3x3
    for row in INCEPTION_V1_BODY:
        if len(row) == 3:  # MaxPool3d_4a_3x3 (3,3,3)/2, MaxPool3d_5a_2x2 (2,2,2)/2, SAME
            _, k, s = row
            x = tl.pool(x, k, s, tf_same=True)
            continue
        _, b0, b1m, b1, b2m, b2, b3 = row
        unit(x, b0, 1)
        unit(unit(x, b1m, 1), b1, 3)  # 3x3x3 (I3D's inflated branch 1)
        unit(unit(x, b2m, 1), b2, 3)  # 3x3x3 where Inception-v1 had 5x5
        unit(tl.pool(x, 3, 1, tf_same=True), b3, 1)
        x = (b0 + b1 + b2 + b3, x[1], x[2], x[3])
    # Logits: AvgPool [2,7,7] stride 1 VALID, dropout, Conv3d_0c_1x1 (bias, no BN, no ReLU).
    c, t, h, w = x
    x = (c, valid_out(t, 2), valid_out(h, 7), valid_out(w, 7))
    tl.conv(x, num_classes, 1, bias=True, tf_same=True)
    return tl.result()


# ---------------------------------------------------------------------------
# S3D-G (Xie et al. 2018), tensorflow/models research/slim/nets/s3dg.py with
# i3d_utils.py, as built by ``s3dg()`` under ``s3dg_arg_scope()`` with its
# defaults (first_temporal_kernel_size=3, temporal_conv_startat and
# gating_startat 'Conv2d_2c_3x3', depth_multiplier 1.0).  All convs/max pools are
# TF 'SAME' (out = ceil(n / stride)).
# * slim.conv3d under the arg scope = conv (no bias) + slim.batch_norm + ReLU.
#   slim.batch_norm defaults to center=True, scale=False and the arg scope does
#   not set ``scale``: beta only (C params).
# * conv3d_spatiotemporal(separable=True, kernel [t,k,k], t != 1): a [1,k,k]
#   conv + BN + ReLU, then a [t,1,1] conv with ``normalizer_fn=None``, so slim
#   creates a bias (default biases_initializer=zeros) and no BN; then ReLU.
# * self_gating: avg pool over the whole (T,H,W), 1x1x1 conv C->C with
#   ``biases_initializer=None`` and ``normalizer_fn=None`` (no bias, no BN), then
#   sigmoid, tile and multiply.  Counted as C*C params and C*C MACs (one linear
#   layer on the pooled vector); the pooling, sigmoid and product are not MACs.
# ---------------------------------------------------------------------------
def s3d_g(*, frames: int = 64, size: int = 224, num_classes: int = 400) -> dict[str, int]:
    """TF-slim S3D-G (``s3dg``) up to the logits, RGB input (3 channels).

    Note ``s3dg()`` itself defaults to num_classes=1000; 400 here is Kinetics-400.
    The Logits AvgPool kernel is ``reduced_kernel_size_3d(net, [2, 7, 7])``, i.e.
    min(map size, [2, 7, 7]) per axis, VALID, stride 1, so (unlike I3D) it always
    fits; at size >= 193 and frames >= 9 it is the full [2, 7, 7].
    """
    tl = Tally()
    bn = "offset"
    x: Shape = (3, frames, size, size)

    def unit(x: Shape, cout: int, k: IntOr3, s: IntOr3 = 1) -> Shape:
        return tl.conv(x, cout, k, s, bn=bn, tf_same=True)

    def sep(x: Shape, cout: int, t: int, k: int) -> Shape:
        """conv3d_spatiotemporal, separable, stride 1: [1,k,k]+BN+ReLU, [t,1,1]+bias+ReLU."""
        x = tl.conv(x, cout, (1, k, k), 1, bn=bn, tf_same=True)
        return tl.conv(x, cout, (t, 1, 1), 1, bias=True, tf_same=True)

    def gate(x: Shape) -> Shape:
        c = x[0]
        tl.params += linear_params(c, c, bias=False)
        tl.macs += linear_macs(c, c)
        return x

    x = unit(x, 64, (3, 7, 7), 2)  # Conv2d_1a_7x7: full 3D conv, stride 2 in T, H, W
    x = tl.pool(x, (1, 3, 3), (1, 2, 2), tf_same=True)  # MaxPool_2a_3x3
    x = unit(x, 64, 1)  # Conv2d_2b_1x1
    x = gate(sep(x, 192, 3, 3))  # Conv2d_2c_3x3 (separable, t=3) + self-gating
    x = tl.pool(x, (1, 3, 3), (1, 2, 2), tf_same=True)  # MaxPool_3a_3x3
    for row in INCEPTION_V1_BODY:
        if len(row) == 3:  # MaxPool_4a_3x3 (3,3,3)/2, MaxPool_5a_2x2 (2,2,2)/2, SAME
            _, k, s = row
            x = tl.pool(x, k, s, tf_same=True)
            continue
        _, b0, b1m, b1, b2m, b2, b3 = row
        y0 = gate(unit(x, b0, 1))
        y1 = gate(sep(unit(x, b1m, 1), b1, 3, 3))
        y2 = gate(sep(unit(x, b2m, 1), b2, 3, 3))
        y3 = gate(unit(tl.pool(x, 3, 1, tf_same=True), b3, 1))
        assert y0[1:] == y1[1:] == y2[1:] == y3[1:] == x[1:]
        x = (b0 + b1 + b2 + b3, x[1], x[2], x[3])
    # Logits: AvgPool_0a_7x7 (reduced kernel, VALID, stride 1), dropout,
    # Conv2d_0c_1x1 (bias, no BN, no ReLU), then mean over time.
    c, t, h, w = x
    kt, kh, kw = min(t, 2), min(h, 7), min(w, 7)
    x = (c, valid_out(t, kt), valid_out(h, kh), valid_out(w, kw))
    tl.conv(x, num_classes, 1, bias=True, tf_same=True)
    return tl.result()


# ---------------------------------------------------------------------------
if __name__ == "__main__":
    fns = {"r3d_18": r3d_18, "mc3_18": mc3_18, "r2plus1d_18": r2plus1d_18, "s3d": s3d}
    print(f"{'model':<12} {'clip':>11} {'params':>10} {'published':>10}  {'GMACs':>9} {'_ops':>8}  match")
    for name, fn in fns.items():
        pub = TORCHVISION_PUBLISHED[name]
        f, s = PUBLISHED_OPS_CLIP[name]
        r = fn(frames=f, size=s)
        ok = r["params"] == pub["num_params"] and round(r["macs"] / 1e9, 3) == pub["_ops"]
        print(
            f"{name:<12} {f:>3}x{s}x{s} {r['params']:>10} {pub['num_params']:>10}  "
            f"{r['macs'] / 1e9:>9.4f} {pub['_ops']:>8}  {'OK' if ok else 'MISMATCH'}"
        )
    print()
    print("GMACs at other clip sizes (for locating the published _ops):")
    for name, fn in fns.items():
        clips = [(8, 112), (16, 112), (32, 112), (16, 224), (32, 224), (64, 224)]
        if name == "s3d":
            clips = [(c, s) for c, s in clips if s >= 224]
        cells = "  ".join(f"{c}x{s}: {fn(frames=c, size=s)['macs'] / 1e9:.3f}" for c, s in clips)
        print(f"  {name:<12} {cells}")
    print()
    for bn_scale in (False, True):
        for f in (16, 64, 79):
            r = i3d(frames=f, size=224, bn_scale=bn_scale)
            print(f"i3d bn_scale={bn_scale!s:<5} {f:>3}x224x224  params={r['params']:>9}  GMACs={r['macs'] / 1e9:.3f}")
    print()
    for f in (16, 32, 64):
        r = s3d_g(frames=f, size=224)
        print(f"s3d_g {f:>3}x224x224  params={r['params']:>9}  GMACs={r['macs'] / 1e9:.3f}")
