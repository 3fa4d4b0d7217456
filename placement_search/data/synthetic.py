"""A procedurally generated clip benchmark that *needs* time to be solved.

Every clip is a function of ``(seed, index)`` alone: a counter-based hash (no global RNG
state) gives each clip its parameters and its pixel noise, so clip 17 is the same clip on
any device, in any batch, in any process. Clips are rendered in batches with tensor
operations on the training device, at any ``frames x size``.

Class families (see ``docs/data.md``)::

    appearance  square, disk                 one still-ish bright object: 2D suffices
    direction   right, left, down, up        an object crosses the frame; the reversed clip
                                             is the opposite class, so an order-blind model
                                             is at chance within each pair
    fine motion shake, drift                 a small object oscillates by ~1.5 px at a few
                                             frames' period, or drifts over the same extent:
                                             rewards temporal ops early, at full resolution
    events      a_then_b, b_then_a, together a red square and a blue disk flash once each
                                             (T/3 frames), far apart; their order (or
                                             simultaneity) is the class: rewards temporal ops
                                             late, where the receptive field spans both

Distractors (small grey objects moving at random), a static textured background and
per-frame pixel noise make it non-trivial; ``difficulty`` in [0, 1] scales noise,
distractors, contrast and the size of the telling motion.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import torch

from ..errors import UserError
from .base import Batch, ClipData

__all__ = ["CLASSES", "FAMILIES", "VERSIONS", "SyntheticConfig", "SyntheticMotion", "render_clips"]

FAMILIES: dict[str, tuple[str, ...]] = {
    "appearance": ("square", "disk"),
    "direction": ("right", "left", "down", "up"),
    "fine_motion": ("shake", "drift"),
    "events": ("a_then_b", "b_then_a", "together"),
}
CLASSES: tuple[str, ...] = tuple(c for cs in FAMILIES.values() for c in cs)
_C = {name: i for i, name in enumerate(CLASSES)}

#: benchmark generations (see SyntheticConfig.version)
VERSIONS = (1, 2)

_MASK32 = 0xFFFFFFFF
_EVAL_SALT = 0x5EED_E7A1
_TRAIN_SALT = 0x7EA1_0000

# shapes
_DISK, _SQUARE = 0, 1


def _mix(x: torch.Tensor) -> torch.Tensor:
    """32-bit integer hash (in int64 arithmetic, no overflow): uniform bits from a counter."""
    x = x & _MASK32
    x = (((x >> 16) ^ x) * 0x45D9F3B) & _MASK32
    x = (((x >> 16) ^ x) * 0x45D9F3B) & _MASK32
    return (x >> 16) ^ x


def _uniform(keys: torch.Tensor, stream: int) -> torch.Tensor:
    """Uniform [0, 1) floats, one per key, independent across ``stream`` numbers."""
    return _mix(keys ^ _mix(torch.full_like(keys, stream))).to(torch.float32) / 2.0**32


@dataclass(frozen=True)
class SyntheticConfig:
    """The synthetic motion benchmark.

    Attributes:
        frames: clip length T.
        size: clip side S in pixels.
        seed: identity of the data set (clip ``i`` of seed ``s`` never changes).
        difficulty: 0 (clean, large motions) .. 1 (noisy, cluttered, subtle).
        eval_clips: held-out clips (balanced over classes).
        classes: which classes to use (default: all eleven).
        version: the benchmark's generation. ``1`` (the original, the default for the
            library and for study files that do not name one): each family's telling cue
            has one size, so a family is solved outright or not at all, and long proxy runs
            saturate. ``2``: each clip draws how hard its cue is from a range (how far the
            object travels, how far the small object moves, how far apart the two events
            are), so accuracy grows with how well a network models time and the best
            placement stays below 95% (measured in ``docs/data.md``).
    """

    frames: int = 16
    size: int = 32
    seed: int = 0
    difficulty: float = 0.5
    eval_clips: int = 1200
    classes: tuple[str, ...] = CLASSES
    version: int = 1

    def __post_init__(self) -> None:
        if self.version not in VERSIONS:
            raise UserError(
                f"synthetic data: version must be one of {', '.join(map(str, VERSIONS))}, got {self.version!r}"
            )
        if self.frames < 8 or self.size < 16:
            raise UserError(
                f"synthetic data: clips need at least 8 frames of 16x16 px, got {self.frames} x {self.size}"
            )
        if not 0.0 <= self.difficulty <= 1.0:
            raise UserError(f"synthetic data: difficulty must be in [0, 1], got {self.difficulty}")
        unknown = [c for c in self.classes if c not in _C]
        if unknown or not self.classes:
            raise UserError(f"synthetic data: unknown class(es) {unknown}; classes are {', '.join(CLASSES)}")
        if not 0 <= self.seed < 2**63:
            raise UserError(f"synthetic data: seed must be in [0, 2^63), got {self.seed}")
        if self.eval_clips < len(self.classes):
            raise UserError(f"synthetic data: eval_clips must be >= the number of classes, got {self.eval_clips}")


def render_clips(cfg: SyntheticConfig, index: torch.Tensor, labels: torch.Tensor, salt: int) -> torch.Tensor:
    """Render clips ``index`` (int64, any device) of classes ``labels`` (indices into
    :data:`CLASSES`) as float32 ``(N, 3, T, S, S)`` in [0, 1]."""
    dev = index.device
    n, t_len, s = index.shape[0], cfg.frames, cfg.size
    d = cfg.difficulty
    keys = _mix(_mix(index ^ _mix(torch.full_like(index, cfg.seed))) ^ salt)
    u = [_uniform(keys, k) for k in range(40)]  # per-clip random numbers

    t = torch.arange(t_len, device=dev, dtype=torch.float32)[None, :]  # (1, T)
    tc = t - (t_len - 1) / 2
    margin = 0.2 * s
    span = s - 2 * margin

    def lerp(a: float, b: float, v: Any) -> Any:
        """a + (b - a) v, for a float or a tensor v."""
        return a + (b - a) * v

    def is_(*names: str) -> torch.Tensor:
        return torch.stack([labels == _C[c] for c in names]).any(0)

    # -- main object: position (N, T), radius, shape, colour, visibility -------------------
    cx0 = lerp(margin, s - margin, u[0])[:, None].expand(n, t_len).clone()
    cy0 = lerp(margin, s - margin, u[1])[:, None].expand(n, t_len).clone()
    angle = 2 * math.pi * u[2][:, None]
    # appearance: slow random wander, larger object
    wander = lerp(0.0, 0.1, u[3])[:, None] * tc
    cx, cy = cx0 + wander * torch.cos(angle), cy0 + wander * torch.sin(angle)
    # direction: cross the frame; the set of positions is the same in both orders
    v2 = cfg.version >= 2
    if v2:  # graded: from a short, slow crossing (hard: needs fine temporal resolution) to a long one
        speed = lerp(0.03, 0.5, u[30])[:, None] * s / (t_len - 1) * lerp(0.95, 1.05, u[4])[:, None]
    else:
        speed = lerp(0.7, 0.6375, d) * s / (t_len - 1) * lerp(0.8, 1.2, u[4])[:, None]
    travel = (speed * tc).clamp(-span / 2, span / 2)
    mid = s / 2 + lerp(-0.15, 0.15, u[5])[:, None] * s
    other = lerp(margin, s - margin, u[6])[:, None].expand(n, t_len)
    sign = torch.where(is_("right", "down"), 1.0, -1.0)[:, None]
    horiz = is_("right", "left")[:, None]
    vert = is_("down", "up")[:, None]
    cx = torch.where(horiz, mid + sign * travel, torch.where(vert, other, cx))
    cy = torch.where(vert, mid + sign * travel, torch.where(horiz, other, cy))
    # fine motion: oscillate by amp at a few frames' period, or drift over the same extent
    if v2:  # graded: 0.15 px (below the noise floor) .. 1.5 px
        amp = lerp(0.15, 1.5, u[31])[:, None]
    else:
        amp = lerp(1.6, 1.425, d) * lerp(0.8, 1.2, u[7])[:, None]
    period = lerp(3.0, 5.0, u[8])[:, None]
    phase = 2 * math.pi * u[9][:, None]
    shake = amp * torch.sin(2 * math.pi * t / period + phase)
    drift = amp * tc / ((t_len - 1) / 2)
    offset = torch.where(is_("shake")[:, None], shake, drift)
    fine = is_("shake", "drift")[:, None]
    cx = torch.where(fine, cx0 + offset * torch.cos(angle), cx)
    cy = torch.where(fine, cy0 + offset * torch.sin(angle), cy)

    radius = torch.where(is_("square", "disk"), lerp(6.0, 5.75, d), lerp(2.6, 2.5, d) * lerp(0.85, 1.15, u[10]))
    shape = torch.where(is_("square"), _SQUARE, torch.where(is_("disk"), _DISK, (u[11] < 0.5).long()))
    # bright, saturated colours that are neither the event objects' red nor blue
    hue = lerp(0.15, 0.45, u[12])
    colour = torch.where(is_("square", "disk")[:, None], torch.tensor([0.95, 0.95, 0.9], device=dev), _hue_rgb(hue))
    visible = (~is_("a_then_b", "b_then_a", "together")).float()[:, None].expand(n, t_len)

    # -- event objects A (red square) and B (blue disk) ------------------------------------
    if v2:  # short flashes, graded gap: adjacent (a local cue) .. at opposite ends of the clip
        dur = max(2, round(t_len / 5))
        gap = torch.floor(lerp(dur, t_len - dur + 1, u[32])).clamp(min=dur, max=t_len - dur)
    else:
        dur = max(3, round(t_len / 3))
        gap = torch.floor(lerp(dur + 1, dur + 1 + t_len / 5, u[13])).clamp(max=t_len - dur)
    first = torch.floor(u[14] * (t_len - dur - gap + 1).clamp(min=1))
    second = first + gap
    ta = torch.where(is_("a_then_b"), first, torch.where(is_("b_then_a"), second, first + torch.floor(gap / 2)))
    tb = torch.where(is_("a_then_b"), second, torch.where(is_("b_then_a"), first, ta))
    events = is_("a_then_b", "b_then_a", "together")[:, None].float()
    vis_a = events * ((t >= ta[:, None]) & (t < ta[:, None] + dur)).float()
    vis_b = events * ((t >= tb[:, None]) & (t < tb[:, None] + dur)).float()
    if v2:  # graded: faint flashes (near the noise floor) .. full contrast
        faint = lerp(0.1, 1.0, u[33])[:, None]
        vis_a, vis_b = vis_a * faint, vis_b * faint
    # far apart: A in one half, B in the other (which half is random)
    left = u[15] < 0.5
    ax = torch.where(left, lerp(margin, s / 2 - 3, u[16]), lerp(s / 2 + 3, s - margin, u[16]))
    bx = torch.where(left, lerp(s / 2 + 3, s - margin, u[17]), lerp(margin, s / 2 - 3, u[17]))
    ay, by = lerp(margin, s - margin, u[18]), lerp(margin, s - margin, u[19])
    r_ev = lerp(5.0, 4.5, d) * torch.ones_like(ax)

    objects = [
        (cx, cy, radius, shape, colour, visible),
        (
            ax[:, None].expand(n, t_len),
            ay[:, None].expand(n, t_len),
            r_ev,
            torch.full_like(shape, _SQUARE),
            torch.tensor([0.95, 0.15, 0.1], device=dev).expand(n, 3),
            vis_a,
        ),
        (
            bx[:, None].expand(n, t_len),
            by[:, None].expand(n, t_len),
            r_ev,
            torch.full_like(shape, _DISK),
            torch.tensor([0.15, 0.3, 0.95], device=dev).expand(n, 3),
            vis_b,
        ),
    ]

    # -- distractors: small grey objects on random straight paths --------------------------
    n_distract = round(lerp(0, 2, d))
    for j in range(n_distract):
        base = 20 + 4 * j
        dang = 2 * math.pi * _uniform(keys, base)[:, None]
        dspeed = lerp(0.0, 1.2, _uniform(keys, base + 1))[:, None]
        dx0 = lerp(0, s, _uniform(keys, base + 2))[:, None]
        dy0 = lerp(0, s, _uniform(keys, base + 3))[:, None]
        grey = lerp(0.35, 0.65, _uniform(keys, base + 1 + 100))[:, None].expand(n, 3)
        objects.append(
            (
                dx0 + dspeed * tc * torch.cos(dang),
                dy0 + dspeed * tc * torch.sin(dang),
                torch.full((n,), 1.6, device=dev),
                (_uniform(keys, base + 2 + 100) < 0.5).long(),
                grey,
                torch.ones(n, t_len, device=dev),
            )
        )

    # -- background: static smooth texture + per-frame noise --------------------------------
    yy, xx = torch.meshgrid(
        torch.arange(s, device=dev, dtype=torch.float32),
        torch.arange(s, device=dev, dtype=torch.float32),
        indexing="ij",
    )
    bg = torch.full((n, 3, 1, s, s), 0.25, device=dev)
    tex_amp = lerp(0.05, 0.075, d)
    for k in range(3):
        fx = (lerp(0.5, 3.0, _uniform(keys, 60 + k)) * 2 * math.pi / s)[:, None, None]
        fy = (lerp(0.5, 3.0, _uniform(keys, 63 + k)) * 2 * math.pi / s)[:, None, None]
        ph = (2 * math.pi * _uniform(keys, 66 + k))[:, None, None]
        wave = torch.sin(fx * xx + fy * yy + ph)  # (N, S, S)
        bg = (
            bg
            + tex_amp / 3 * wave[:, None, None] * torch.tensor([1.0, 0.9, 0.8], device=dev)[None, :, None, None, None]
        )
    clip = bg.expand(n, 3, t_len, s, s).clone()
    contrast = lerp(1.0, 0.925, d)
    axis = torch.arange(s, device=dev, dtype=torch.float32)
    for ox, oy, r, shp, col, vis in objects:
        # soft edges (sub-pixel motion shows), computed from separable 1D profiles
        rr = r[:, None, None]
        dx = axis - ox[:, :, None]  # (N, T, S)
        dy = axis - oy[:, :, None]
        box = torch.sigmoid((rr - dx.abs()) * 3.0)[:, :, None, :] * torch.sigmoid((rr - dy.abs()) * 3.0)[:, :, :, None]
        d2 = dx.square()[:, :, None, :] + dy.square()[:, :, :, None]  # (N, T, S, S)
        disk = torch.sigmoid((rr[..., None] ** 2 - d2) * (1.5 / rr[..., None]))  # ~ sigmoid(3 (r - dist)) at the edge
        mask = torch.where((shp == _SQUARE)[:, None, None, None], box, disk)
        mask = mask * (vis * contrast)[:, :, None, None]
        clip.lerp_(col[:, :, None, None, None].expand_as(clip), mask[:, None])
    # pixel noise: a window, chosen per clip by the hash, into a fixed table of uniform noise
    table = _noise_table(dev, 2 * t_len * s * s)
    start = _mix(keys ^ 0x7AB1E) % (table.numel() - t_len * s * s)
    noise = table[start[:, None] + torch.arange(t_len * s * s, device=dev)].view(n, 1, t_len, s, s)
    clip.add_(noise, alpha=lerp(0.0, 0.1, d) * (3.0 if v2 else 1.0))
    return clip.clamp(0, 1)


_NOISE: dict[tuple[torch.device, int], torch.Tensor] = {}


def _noise_table(device: torch.device, at_least: int) -> torch.Tensor:
    """Uniform values in [-0.5, 0.5) from the hash, the same on every device: 2^20 of
    them, or the next power of two >= ``at_least`` for very large clips."""
    n = max(1 << 20, 1 << (at_least - 1).bit_length())
    if (device, n) not in _NOISE:
        _NOISE[(device, n)] = _uniform(torch.arange(n, device=device), 99) - 0.5
    return _NOISE[(device, n)]


def _hue_rgb(h: torch.Tensor) -> torch.Tensor:
    """Fully saturated RGB for hues in [0, 1)."""
    k = torch.stack([(5 + h * 6) % 6, (3 + h * 6) % 6, (1 + h * 6) % 6], dim=1)
    return 1 - torch.clamp(torch.minimum(k, 4 - k), 0, 1)


class SyntheticMotion(ClipData):
    """The synthetic motion benchmark as a :class:`ClipData`.

    Training clips are an endless stream (clip ``i`` of the stream for a seed is fixed);
    held-out clips are a fixed, class-balanced set from a separate hash salt.
    """

    MEAN = 0.4
    STD = 0.25

    def __init__(self, config: SyntheticConfig | None = None) -> None:
        self.config = config or SyntheticConfig()
        self.class_names = list(self.config.classes)
        self.frames = self.config.frames
        self.size = self.config.size
        self._class_ids = torch.tensor([_C[c] for c in self.config.classes])

    @property
    def eval_size(self) -> int:
        return self.config.eval_clips

    def _batch(self, index: torch.Tensor, labels: torch.Tensor, salt: int) -> Batch:
        x = render_clips(self.config, index, self._class_ids.to(index.device)[labels], salt)
        return (x - self.MEAN) / self.STD, labels

    def train_batches(self, batch_size: int, *, seed: int, device: torch.device) -> Iterator[Batch]:
        start = 0
        salt = _TRAIN_SALT ^ int(_mix(torch.tensor(seed)).item())
        k = len(self.class_names)
        while True:
            index = torch.arange(start, start + batch_size, device=device, dtype=torch.int64)
            labels = (_mix(index ^ salt ^ 0x1ABE1) % k).long()
            yield self._batch(index, labels, salt)
            start += batch_size

    def eval_batches(self, batch_size: int, *, device: torch.device) -> Iterator[Batch]:
        k = len(self.class_names)
        for start in range(0, self.eval_size, batch_size):
            index = torch.arange(start, min(start + batch_size, self.eval_size), device=device, dtype=torch.int64)
            yield self._batch(index, index % k, _EVAL_SALT)

    def describe(self) -> dict[str, Any]:
        return {"name": "synthetic", **super().describe(), **asdict(self.config), "classes": list(self.config.classes)}
