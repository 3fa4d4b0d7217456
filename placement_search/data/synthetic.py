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
from typing import Any, NamedTuple

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
    scene = _Scene.of(cfg, index, labels, salt)
    clip = _background(scene)
    contrast = _lerp(1.0, 0.925, scene.d)
    for obj in (_main_object(scene), *_event_objects(scene), *_distractors(scene)):
        _draw(clip, obj, contrast)
    _add_noise(clip, scene)
    return clip.clamp(0, 1)


def _lerp(a: float, b: float, v: Any) -> Any:
    """a + (b - a) v, for a float or a tensor v."""
    return a + (b - a) * v


@dataclass(frozen=True, eq=False)
class _Scene:
    """What every part of a batch of clips is drawn from: classes, sizes, time and the
    per-clip random numbers."""

    labels: torch.Tensor
    keys: torch.Tensor  # (N,) per-clip hash: every random number of a clip comes from it
    u: list[torch.Tensor]  # per-clip random numbers, (N,) each
    n: int
    t_len: int
    s: int
    d: float  # difficulty
    v2: bool  # benchmark version 2 or later
    t: torch.Tensor  # (1, T) frame numbers
    tc: torch.Tensor  # (1, T) frame numbers, 0 in the middle of the clip
    margin: float
    span: float

    @classmethod
    def of(cls, cfg: SyntheticConfig, index: torch.Tensor, labels: torch.Tensor, salt: int) -> _Scene:
        t_len, s = cfg.frames, cfg.size
        keys = _mix(_mix(index ^ _mix(torch.full_like(index, cfg.seed))) ^ salt)
        t = torch.arange(t_len, device=index.device, dtype=torch.float32)[None, :]
        margin = 0.2 * s
        return cls(
            labels=labels,
            keys=keys,
            u=[_uniform(keys, k) for k in range(40)],
            n=index.shape[0],
            t_len=t_len,
            s=s,
            d=cfg.difficulty,
            v2=cfg.version >= 2,
            t=t,
            tc=t - (t_len - 1) / 2,
            margin=margin,
            span=s - 2 * margin,
        )

    @property
    def device(self) -> torch.device:
        return self.keys.device

    def is_(self, *names: str) -> torch.Tensor:
        """Per clip: is its class one of ``names``?"""
        return torch.stack([self.labels == _C[c] for c in names]).any(0)

    def per_frame(self, v: torch.Tensor) -> torch.Tensor:
        """A per-clip value ``(N,)`` as the same value in every frame, ``(N, T)``."""
        return v[:, None].expand(self.n, self.t_len)


class _Object(NamedTuple):
    """One object of every clip of a batch."""

    x: torch.Tensor  # (N, T) centre
    y: torch.Tensor  # (N, T)
    radius: torch.Tensor  # (N,)
    shape: torch.Tensor  # (N,) _DISK or _SQUARE
    colour: torch.Tensor  # (N, 3)
    visible: torch.Tensor  # (N, T) opacity in [0, 1]


def _main_object(sc: _Scene) -> _Object:
    """The main object: its path (a wander, a crossing or a fine motion, by class), radius,
    shape, colour and visibility (none in the event classes)."""
    u, d, is_ = sc.u, sc.d, sc.is_
    cx0 = sc.per_frame(_lerp(sc.margin, sc.s - sc.margin, u[0])).clone()
    cy0 = sc.per_frame(_lerp(sc.margin, sc.s - sc.margin, u[1])).clone()
    angle = 2 * math.pi * u[2][:, None]
    # appearance: slow random wander, larger object
    wander = _lerp(0.0, 0.1, u[3])[:, None] * sc.tc
    cx, cy = _crossing(sc, cx0 + wander * torch.cos(angle), cy0 + wander * torch.sin(angle))
    cx, cy = _fine_motion(sc, cx0, cy0, angle, cx, cy)

    radius = torch.where(is_("square", "disk"), _lerp(6.0, 5.75, d), _lerp(2.6, 2.5, d) * _lerp(0.85, 1.15, u[10]))
    shape = torch.where(is_("square"), _SQUARE, torch.where(is_("disk"), _DISK, (u[11] < 0.5).long()))
    # bright, saturated colours that are neither the event objects' red nor blue
    hue = _lerp(0.15, 0.45, u[12])
    white = torch.tensor([0.95, 0.95, 0.9], device=sc.device)
    colour = torch.where(is_("square", "disk")[:, None], white, _hue_rgb(hue))
    visible = sc.per_frame((~is_("a_then_b", "b_then_a", "together")).float())
    return _Object(cx, cy, radius, shape, colour, visible)


def _crossing(sc: _Scene, cx: torch.Tensor, cy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The main object's path ``(cx, cy)``, made to cross the frame in the direction classes;
    the set of positions is the same in both orders."""
    u, s = sc.u, sc.s
    if sc.v2:  # graded: from a short, slow crossing (hard: needs fine temporal resolution) to a long one
        speed = _lerp(0.03, 0.5, u[30])[:, None] * s / (sc.t_len - 1) * _lerp(0.95, 1.05, u[4])[:, None]
    else:
        speed = _lerp(0.7, 0.6375, sc.d) * s / (sc.t_len - 1) * _lerp(0.8, 1.2, u[4])[:, None]
    travel = (speed * sc.tc).clamp(-sc.span / 2, sc.span / 2)
    mid = s / 2 + _lerp(-0.15, 0.15, u[5])[:, None] * s
    other = sc.per_frame(_lerp(sc.margin, s - sc.margin, u[6]))
    sign = torch.where(sc.is_("right", "down"), 1.0, -1.0)[:, None]
    horiz = sc.is_("right", "left")[:, None]
    vert = sc.is_("down", "up")[:, None]
    cx = torch.where(horiz, mid + sign * travel, torch.where(vert, other, cx))
    cy = torch.where(vert, mid + sign * travel, torch.where(horiz, other, cy))
    return cx, cy


def _fine_motion(
    sc: _Scene, cx0: torch.Tensor, cy0: torch.Tensor, angle: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The main object's path ``(cx, cy)``, replaced in the fine-motion classes: oscillate by
    amp about ``(cx0, cy0)`` along ``angle`` at a few frames' period, or drift over the same extent."""
    u = sc.u
    if sc.v2:  # graded: 0.15 px (below the noise floor) .. 1.5 px
        amp = _lerp(0.15, 1.5, u[31])[:, None]
    else:
        amp = _lerp(1.6, 1.425, sc.d) * _lerp(0.8, 1.2, u[7])[:, None]
    period = _lerp(3.0, 5.0, u[8])[:, None]
    phase = 2 * math.pi * u[9][:, None]
    shake = amp * torch.sin(2 * math.pi * sc.t / period + phase)
    drift = amp * sc.tc / ((sc.t_len - 1) / 2)
    offset = torch.where(sc.is_("shake")[:, None], shake, drift)
    fine = sc.is_("shake", "drift")[:, None]
    cx = torch.where(fine, cx0 + offset * torch.cos(angle), cx)
    cy = torch.where(fine, cy0 + offset * torch.sin(angle), cy)
    return cx, cy


def _event_objects(sc: _Scene) -> tuple[_Object, _Object]:
    """The event objects A (red square) and B (blue disk), far apart: A in one half, B in the
    other (which half is random); each flashes once, in the event classes only."""
    u, s, m, dev = sc.u, sc.s, sc.margin, sc.device
    vis_a, vis_b = _event_flashes(sc)
    left = u[15] < 0.5
    ax = torch.where(left, _lerp(m, s / 2 - 3, u[16]), _lerp(s / 2 + 3, s - m, u[16]))
    bx = torch.where(left, _lerp(s / 2 + 3, s - m, u[17]), _lerp(m, s / 2 - 3, u[17]))
    ay, by = _lerp(m, s - m, u[18]), _lerp(m, s - m, u[19])
    r_ev = _lerp(5.0, 4.5, sc.d) * torch.ones_like(ax)
    square = torch.full((sc.n,), _SQUARE, dtype=torch.int64, device=dev)
    disk = torch.full((sc.n,), _DISK, dtype=torch.int64, device=dev)
    red = torch.tensor([0.95, 0.15, 0.1], device=dev).expand(sc.n, 3)
    blue = torch.tensor([0.15, 0.3, 0.95], device=dev).expand(sc.n, 3)
    return (
        _Object(sc.per_frame(ax), sc.per_frame(ay), r_ev, square, red, vis_a),
        _Object(sc.per_frame(bx), sc.per_frame(by), r_ev, disk, blue, vis_b),
    )


def _event_flashes(sc: _Scene) -> tuple[torch.Tensor, torch.Tensor]:
    """How visible A and B are, ``(N, T)`` each: one flash each, in the order the class names
    (at once for ``together``); nothing outside the event classes."""
    t_len, u, is_ = sc.t_len, sc.u, sc.is_
    if sc.v2:  # short flashes, graded gap: adjacent (a local cue) .. at opposite ends of the clip
        dur = max(2, round(t_len / 5))
        gap = torch.floor(_lerp(dur, t_len - dur + 1, u[32])).clamp(min=dur, max=t_len - dur)
    else:
        dur = max(3, round(t_len / 3))
        gap = torch.floor(_lerp(dur + 1, dur + 1 + t_len / 5, u[13])).clamp(max=t_len - dur)
    first = torch.floor(u[14] * (t_len - dur - gap + 1).clamp(min=1))
    second = first + gap
    ta = torch.where(is_("a_then_b"), first, torch.where(is_("b_then_a"), second, first + torch.floor(gap / 2)))
    tb = torch.where(is_("a_then_b"), second, torch.where(is_("b_then_a"), first, ta))
    events = is_("a_then_b", "b_then_a", "together")[:, None].float()
    vis_a = events * ((sc.t >= ta[:, None]) & (sc.t < ta[:, None] + dur)).float()
    vis_b = events * ((sc.t >= tb[:, None]) & (sc.t < tb[:, None] + dur)).float()
    if sc.v2:  # graded: faint flashes (near the noise floor) .. full contrast
        faint = _lerp(0.1, 1.0, u[33])[:, None]
        vis_a, vis_b = vis_a * faint, vis_b * faint
    return vis_a, vis_b


def _distractors(sc: _Scene) -> list[_Object]:
    """Small grey objects on random straight paths: none at difficulty 0, up to two at 1."""
    n, keys, dev = sc.n, sc.keys, sc.device
    objects = []
    for j in range(round(_lerp(0, 2, sc.d))):
        base = 20 + 4 * j
        dang = 2 * math.pi * _uniform(keys, base)[:, None]
        dspeed = _lerp(0.0, 1.2, _uniform(keys, base + 1))[:, None]
        dx0 = _lerp(0, sc.s, _uniform(keys, base + 2))[:, None]
        dy0 = _lerp(0, sc.s, _uniform(keys, base + 3))[:, None]
        grey = _lerp(0.35, 0.65, _uniform(keys, base + 1 + 100))[:, None].expand(n, 3)
        objects.append(
            _Object(
                dx0 + dspeed * sc.tc * torch.cos(dang),
                dy0 + dspeed * sc.tc * torch.sin(dang),
                torch.full((n,), 1.6, device=dev),
                (_uniform(keys, base + 2 + 100) < 0.5).long(),
                grey,
                torch.ones(n, sc.t_len, device=dev),
            )
        )
    return objects


def _background(sc: _Scene) -> torch.Tensor:
    """The clips before any object: a static smooth texture in every frame, ``(N, 3, T, S, S)``."""
    n, s, dev = sc.n, sc.s, sc.device
    yy, xx = torch.meshgrid(
        torch.arange(s, device=dev, dtype=torch.float32),
        torch.arange(s, device=dev, dtype=torch.float32),
        indexing="ij",
    )
    bg = torch.full((n, 3, 1, s, s), 0.25, device=dev)
    tex_amp = _lerp(0.05, 0.075, sc.d)
    tint = torch.tensor([1.0, 0.9, 0.8], device=dev)[None, :, None, None, None]
    for k in range(3):
        fx = (_lerp(0.5, 3.0, _uniform(sc.keys, 60 + k)) * 2 * math.pi / s)[:, None, None]
        fy = (_lerp(0.5, 3.0, _uniform(sc.keys, 63 + k)) * 2 * math.pi / s)[:, None, None]
        ph = (2 * math.pi * _uniform(sc.keys, 66 + k))[:, None, None]
        wave = torch.sin(fx * xx + fy * yy + ph)  # (N, S, S)
        bg = bg + tex_amp / 3 * wave[:, None, None] * tint
    return bg.expand(n, 3, sc.t_len, s, s).clone()


def _draw(clip: torch.Tensor, obj: _Object, contrast: float) -> None:
    """Blend ``obj`` into ``clip`` (in place), with soft edges (sub-pixel motion shows),
    computed from separable 1D profiles."""
    axis = torch.arange(clip.shape[-1], device=clip.device, dtype=torch.float32)
    rr = obj.radius[:, None, None]
    dx = axis - obj.x[:, :, None]  # (N, T, S)
    dy = axis - obj.y[:, :, None]
    box = torch.sigmoid((rr - dx.abs()) * 3.0)[:, :, None, :] * torch.sigmoid((rr - dy.abs()) * 3.0)[:, :, :, None]
    d2 = dx.square()[:, :, None, :] + dy.square()[:, :, :, None]  # (N, T, S, S)
    disk = torch.sigmoid((rr[..., None] ** 2 - d2) * (1.5 / rr[..., None]))  # ~ sigmoid(3 (r - dist)) at the edge
    mask = torch.where((obj.shape == _SQUARE)[:, None, None, None], box, disk)
    mask = mask * (obj.visible * contrast)[:, :, None, None]
    clip.lerp_(obj.colour[:, :, None, None, None].expand_as(clip), mask[:, None])


def _add_noise(clip: torch.Tensor, sc: _Scene) -> None:
    """Per-frame pixel noise (in place): a window, chosen per clip by the hash, into a fixed
    table of uniform noise."""
    n, t_len, s, dev = sc.n, sc.t_len, sc.s, sc.device
    table = _noise_table(dev, 2 * t_len * s * s)
    start = _mix(sc.keys ^ 0x7AB1E) % (table.numel() - t_len * s * s)
    noise = table[start[:, None] + torch.arange(t_len * s * s, device=dev)].view(n, 1, t_len, s, s)
    clip.add_(noise, alpha=_lerp(0.0, 0.1, sc.d) * (3.0 if sc.v2 else 1.0))


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
