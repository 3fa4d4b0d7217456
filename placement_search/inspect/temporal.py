"""Where trained temporal kernels put their weight: the share of |w| at each temporal offset, by depth.

The S3D paper (Xie et al. 2018) looked at the weights of a trained I3D and found that the
low-level 3D kernels put almost all their magnitude on the centre frame, so they act like
2D convolutions, while the high-level ones spread it over time. This module measures that
for any trained model of the package (or any video network's state dict)::

    analysis = analyze_temporal("export_dir")       # or weights.safetensors, model.pt
    print(render_table(analysis))
    render_figure(analysis).write_html("temporal.html", include_plotlyjs=True)

A *temporal kernel* is a 5-D conv weight ``[out, in, kt, kh, kw]`` with ``kt > 1``: the
full ``kt x k x k`` conv of a ``3d`` op (kind ``"3d"``) or the ``kt x 1 x 1`` temporal conv
of a ``sep`` / ``2plus1d`` op (kind ``"temporal"``). Its share at temporal offset ``t`` is
``sum(|w[:, :, t]|) / sum(|w|)``. Offsets are relative to the centre frame for odd ``kt``
(``-(kt // 2) .. kt // 2``; the *centre share* is the share at 0, ``1 / kt`` if the weight
is spread evenly, 1.0 for a kernel that acts like a 2D conv); even ``kt`` has no centre
frame, so its offsets are plain indices ``0 .. kt - 1`` and its centre share is ``None``.

Depth is the layer's index among all 5-D conv weights (2D ones included) in network order:
the order of the built model when the architecture is known (an export's ``arch.json``, or
the placement that search trials write into their weights' metadata), else the order of a
``.pt`` state dict as saved, else the natural sort of the parameter names.

Compute the data (:func:`temporal_kernels`, :func:`analyze_temporal`), then render it
(:func:`render_table`, :func:`render_figure`, :func:`write_output`); plotly is only needed
for the figure.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch

from ..errors import UserError

if TYPE_CHECKING:
    import plotly.graph_objects as go

if sys.version_info >= (3, 11):
    pass
else:  # pragma: no cover
    pass

__all__ = [
    "OUTPUT_SUFFIXES",
    "LoadedWeights",
    "TemporalAnalysis",
    "TemporalKernel",
    "analyze_temporal",
    "check_output_path",
    "load_weights",
    "natural_key",
    "render_figure",
    "render_table",
    "temporal_kernels",
    "write_output",
]

KernelKind = Literal["3d", "temporal"]
OrderSource = Literal["model", "file", "names"]

#: What ``write_output`` writes for each file-name ending.
OUTPUT_SUFFIXES = {".html": "the figure, self-contained HTML", ".csv": "the data as CSV", ".json": "the data as JSON"}
_CHECKPOINT_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "weights")
_ORDER_TEXT = {
    "model": "network order (from the built model)",
    "file": "the order of the saved state dict",
    "names": "natural sort of the parameter names (no architecture found; a name like 'stem' may sort after 'layer4')",
}


@dataclass(frozen=True)
class TemporalKernel:
    """One temporal kernel and the share of its weight magnitude at each temporal offset."""

    depth: int
    """Index among all 5-D conv weights of the model (2D ones included) in network order, from 0."""
    name: str
    kind: KernelKind
    """``3d`` (kt x kh x kw with kh or kw > 1) or ``temporal`` (kt x 1 x 1 of ``sep`` / ``2plus1d``)."""
    kt: int
    shape: tuple[int, ...]
    offsets: tuple[int, ...]
    """Relative to the centre frame for odd ``kt`` (``offset_origin`` "centre"); indices ``0 .. kt - 1``
    for even ``kt`` ("start")."""
    shares: tuple[float, ...]
    """Share of ``sum(|w|)`` at each offset; NaN for an all-zero kernel."""

    @property
    def centred(self) -> bool:
        """Whether the offsets are relative to a centre frame (odd ``kt``)."""
        return self.kt % 2 == 1

    @property
    def centre_share(self) -> float | None:
        """Share at offset 0 for odd ``kt`` (1.0: acts like 2D; ``1 / kt``: spread evenly); ``None`` for even."""
        return self.shares[self.kt // 2] if self.centred else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "depth": self.depth,
            "name": self.name,
            "kind": self.kind,
            "kt": self.kt,
            "shape": list(self.shape),
            "offsets": list(self.offsets),
            "offset_origin": "centre" if self.centred else "start",
            "shares": [_finite(s) for s in self.shares],
            "centre_share": None if self.centre_share is None else _finite(self.centre_share),
        }


@dataclass(frozen=True)
class LoadedWeights:
    """A state dict read from a file, with the network order of its names when it can be found."""

    source: Path
    state_dict: dict[str, torch.Tensor]
    order: list[str] | None
    order_source: OrderSource
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class TemporalAnalysis:
    """Every temporal kernel of one model, in depth order."""

    source: str
    order: OrderSource
    conv_layers: int
    kernels: tuple[TemporalKernel, ...]
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "order": self.order,
            "conv_layers": self.conv_layers,
            "temporal_kernels": len(self.kernels),
            "notes": list(self.notes),
            "kernels": [k.to_dict() for k in self.kernels],
        }


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


# -- the measurement ----------------------------------------------------------------------


def natural_key(name: str) -> tuple[Any, ...]:
    """Sort key that compares digit runs as numbers: ``layer2`` before ``layer10``."""
    return tuple(int(part) if i % 2 else part for i, part in enumerate(re.split(r"(\d+)", name)))


def _is_conv_weight(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.dim() == 5 and value.is_floating_point()


def temporal_kernels(
    state_dict: Mapping[str, torch.Tensor], order: Sequence[str] | None = None
) -> list[TemporalKernel]:
    """The temporal kernels of a state dict and their weight share per temporal offset.

    Every 5-D floating-point tensor counts as a conv weight ``[out, in, kt, kh, kw]``; those
    with ``kt > 1`` are temporal kernels. Other tensors (norms, biases, linear layers) are
    ignored.

    Args:
        state_dict: parameter name -> tensor, on any device and in any floating dtype.
        order: parameter names in network order. Conv weights missing from it follow, in
            natural-sort order; ``None`` sorts all of them by name (:func:`natural_key`).

    Returns:
        One :class:`TemporalKernel` per temporal kernel, by depth (empty for an all-2D model).
    """
    rank = {name: i for i, name in enumerate(order or ())}
    convs = sorted(
        (name for name, value in state_dict.items() if _is_conv_weight(value)),
        key=lambda n: (0, rank[n], ()) if n in rank else (1, 0, natural_key(n)),
    )
    out = []
    for depth, name in enumerate(convs):
        w = state_dict[name]
        kt = int(w.shape[2])
        if kt < 2:
            continue
        per_t = w.detach().to(device="cpu", dtype=torch.float64).abs().sum(dim=(0, 1, 3, 4))
        total = float(per_t.sum())
        shares = tuple(float(v) / total if total > 0 else math.nan for v in per_t.tolist())
        offsets = tuple(range(-(kt // 2), kt // 2 + 1)) if kt % 2 else tuple(range(kt))
        kind: KernelKind = "3d" if w.shape[3] > 1 or w.shape[4] > 1 else "temporal"
        out.append(TemporalKernel(depth, name, kind, kt, tuple(int(s) for s in w.shape), offsets, shares))
    return out


def analyze_temporal(path: str | Path) -> TemporalAnalysis:
    """Load a trained model (see :func:`load_weights`) and measure its temporal kernels.

    Raises:
        UserError: the file cannot be read, or the model has no temporal kernel.
    """
    loaded = load_weights(path)
    kernels = temporal_kernels(loaded.state_dict, loaded.order)
    convs = [n for n, v in loaded.state_dict.items() if _is_conv_weight(v)]
    if not kernels:
        raise UserError(
            f"{loaded.source}: no temporal kernels (5-D conv weights with temporal extent kt > 1) among "
            f"{len(loaded.state_dict)} tensors, {len(convs)} of them conv weights, all with kt = 1: "
            "an all-2D model has nothing to analyse"
        )
    notes = list(loaded.notes)
    zero = [k.name for k in kernels if not all(math.isfinite(s) for s in k.shares)]
    if zero:
        notes.append(f"{len(zero)} kernel(s) all zero or not finite, shares undefined: {', '.join(zero)}")
    if any(not k.centred for k in kernels):
        notes.append("even kt has no centre frame: its offsets are indices 0 .. kt-1 and it has no centre share")
    notes += _training_notes(Path(path), kernels)
    return TemporalAnalysis(str(loaded.source), loaded.order_source, len(convs), tuple(kernels), tuple(notes))


#: proxy runs shorter than this leave kernels close to their random initialisation
FEW_STEPS = 2000


def _training_notes(path: Path, kernels: Sequence[TemporalKernel]) -> list[str]:
    """Why there may be nothing to read: weights from a short proxy run (known from an export's
    arch.json), or shares that are all close to uniform."""
    notes = []
    arch = path / "arch.json" if path.is_dir() else path.parent / "arch.json"
    steps = None
    if arch.is_file():
        try:
            steps = json.loads(arch.read_text(encoding="utf-8")).get("proxy", {}).get("steps_done")
        except (OSError, ValueError, AttributeError):
            steps = None
    if isinstance(steps, int) and steps < FEW_STEPS:
        notes.append(
            f"these weights come from a proxy run of {steps} steps: too little training for kernels to move far "
            "from their random initialisation (spread evenly over time), so the shares below say little about "
            "where the network uses time; analyse weights trained at full scale"
        )
    odd = [k for k in kernels if k.centred and k.centre_share is not None and math.isfinite(k.centre_share)]
    if odd and all(abs(k.centre_share - 1 / k.kt) < 0.05 for k in odd if k.centre_share is not None):
        notes.append(
            "every kernel's centre share is within 0.05 of 1/kt: the weight is spread evenly over time, as at "
            "initialisation; nothing can be read from it yet"
        )
    return notes


# -- loading ------------------------------------------------------------------------------

_EXPECTED = "a .safetensors or .pt/.pth state dict, or an export folder with arch.json and weights.safetensors"


def load_weights(path: str | Path) -> LoadedWeights:
    """Read a state dict and, where possible, the network order of its names.

    Args:
        path: one of

            * an export folder with ``weights.safetensors`` and (optionally) ``arch.json``;
            * a ``.safetensors`` file (a ``weights.safetensors`` next to an ``arch.json`` uses it);
            * a ``.pt`` / ``.pth`` file, read with ``torch.load(weights_only=True)`` (nothing
              else is unpickled): a state dict, or a checkpoint dict holding one under
              ``state_dict``, ``model_state_dict``, ``model``, ``module``, ``net`` or ``weights``.

    The architecture (an ``arch.json``, or the placement a search trial stores in its
    weights' metadata, for a shipped space) is only used for the order of the layers; when
    it is missing or does not match the weights, the names give the order and a note says why.
    """
    p = Path(path)
    if p.is_dir():
        weights = p / "weights.safetensors"
        if not weights.is_file():
            raise UserError(f"{p}: an export folder must hold weights.safetensors (expected {_EXPECTED})")
        return _load_safetensors(weights, p / "arch.json")
    if not p.exists():
        raise UserError(f"{p}: no such file or folder (expected {_EXPECTED})")
    suffix = p.suffix.lower()
    if suffix == ".safetensors":
        arch = p.with_name("arch.json") if p.name == "weights.safetensors" else None
        return _load_safetensors(p, arch)
    if suffix in (".pt", ".pth"):
        return _load_torch(p)
    raise UserError(f"{p}: unknown kind of file {suffix or '(no extension)'!r}; expected {_EXPECTED}")


def _load_safetensors(path: Path, arch: Path | None) -> LoadedWeights:
    try:
        from safetensors import safe_open
        from safetensors.torch import load_file
    except ImportError:  # pragma: no cover
        raise UserError(
            f"{path}: reading .safetensors needs the safetensors package (pip install safetensors)"
        ) from None
    try:
        state = load_file(str(path), device="cpu")
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except Exception as e:
        raise UserError(f"{path}: not a readable safetensors file ({e})") from None
    notes: list[str] = []
    if arch is not None and arch.is_file():
        order = _order_from_arch(arch, state, notes)
    else:
        order = _order_from_metadata(path, metadata, state, notes)
    if order is not None:
        return LoadedWeights(path, state, order, "model", notes)
    return LoadedWeights(path, state, None, "names", notes)


def _load_torch(path: Path) -> LoadedWeights:
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        first = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(
            f"{path}: not a plain PyTorch state dict ({first[:200]}); only tensors and plain containers are "
            "loaded (torch.load weights_only=True), never pickled objects: save a state_dict or safetensors"
        ) from None
    notes: list[str] = []
    state = _find_state_dict(obj, path, notes)
    names = [n for n, v in state.items() if _is_conv_weight(v)]
    if names == sorted(names):  # saved sorted (or a single conv): the order says nothing
        return LoadedWeights(path, state, None, "names", notes)
    return LoadedWeights(path, state, list(state), "file", notes)


def _tensors(obj: Any) -> dict[str, torch.Tensor] | None:
    if not isinstance(obj, Mapping):
        return None
    found = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    return found or None


def _find_state_dict(obj: Any, path: Path, notes: list[str]) -> dict[str, torch.Tensor]:
    state = _tensors(obj)
    if state is not None:
        return state
    if isinstance(obj, Mapping):
        for key in _CHECKPOINT_KEYS:
            state = _tensors(obj.get(key))
            if state is not None:
                notes.append(f"read the {key!r} entry of the checkpoint")
                return state
        keys = ", ".join(repr(k) for k in list(obj)[:12])
        raise UserError(
            f"{path}: no tensors at the top level or under {', '.join(map(repr, _CHECKPOINT_KEYS))}; "
            f"expected a state dict (name -> tensor), found keys {keys}"
        )
    raise UserError(f"{path}: expected a state dict (name -> tensor), found a {type(obj).__name__}")


# -- network order from the architecture --------------------------------------------------


def _order_from_arch(arch: Path, state: Mapping[str, torch.Tensor], notes: list[str]) -> list[str] | None:
    """Model order from an export's ``arch.json``; ``None`` (and a note) when it cannot be used."""
    try:
        data = json.loads(arch.read_text(encoding="utf-8"))
        space_info = data["space"]
        from ..placement import Placement
        from ..space import space_from_text

        space = space_from_text(space_info["toml"], where=f"{arch}: space.toml")
        placement = Placement.from_dict(data["placement"], f"{arch}: placement")
        num_classes = data.get("num_classes", 400)
        order = _model_order(space, placement, num_classes if isinstance(num_classes, int) else 400, state)
    except Exception as e:
        notes.append(f"{arch} could not be used to build the model ({type(e).__name__}: {e}); layers ordered by name")
        return None
    if order is None:
        notes.append(f"{arch} describes a model whose conv weights do not match the weights; layers ordered by name")
    return order


def _order_from_metadata(
    path: Path, metadata: Mapping[str, str], state: Mapping[str, torch.Tensor], notes: list[str]
) -> list[str] | None:
    """Model order from the placement that search trials store in their weights' metadata
    (only for a shipped space: names from a file never become paths)."""
    text = metadata.get("placement")
    if text is None:
        return None
    try:
        from ..placement import Placement
        from ..space import list_spaces, load_space

        placement = Placement.from_json(text, f"{path}: metadata placement")
        if placement.space not in list_spaces():
            notes.append(f"the placement in {path}'s metadata names space {placement.space!r}, which is not shipped")
            return None
        order = _model_order(load_space(placement.space), placement, 400, state)
    except Exception as e:
        notes.append(f"the placement in {path}'s metadata could not be used ({type(e).__name__}: {e})")
        return None
    if order is None:
        notes.append(f"the placement in {path}'s metadata does not match the weights; layers ordered by name")
    return order


def _model_order(space: Any, placement: Any, num_classes: int, state: Mapping[str, torch.Tensor]) -> list[str] | None:
    """Names of ``state`` in the order of the model built on the meta device (nothing
    allocated), or ``None`` unless every conv weight of ``state`` is in it with its shape.
    A prefix on the saved names (``module.`` of DistributedDataParallel) is allowed."""
    from ..cost import meta_build

    model = meta_build(space.build, placement, num_classes=num_classes)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    rank = {k: i for i, k in enumerate(shapes)}
    found: dict[str, int] = {}
    for name, value in state.items():
        parts = name.split(".")
        key = next((k for k in (".".join(parts[i:]) for i in range(len(parts))) if k in rank), None)
        if key is not None:
            if _is_conv_weight(value) and shapes[key] != tuple(value.shape):
                return None
            found[name] = rank[key]
        elif _is_conv_weight(value):
            return None
    return sorted(found, key=found.__getitem__)


# -- rendering ----------------------------------------------------------------------------


def _share(x: float | None) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.3f}"


def _offset_label(t: int) -> str:
    return f"t={t:+d}" if t else "t=0"


def render_table(analysis: TemporalAnalysis) -> str:
    """Plain-text table: one line per temporal kernel, one column per temporal offset."""
    ks = analysis.kernels
    offsets = sorted({t for k in ks if k.centred for t in k.offsets})
    even = any(not k.centred for k in ks)
    header = ["depth", "layer", "kind", "kt", "shape", *map(_offset_label, offsets), "centre"]
    if even:
        header.append("shares by index (even kt)")
    rows = []
    for k in ks:
        by_t = dict(zip(k.offsets, k.shares)) if k.centred else {}
        row = [str(k.depth), k.name, k.kind, str(k.kt), "x".join(map(str, k.shape))]
        row += [_share(by_t[t]) if t in by_t else "" for t in offsets] + [_share(k.centre_share)]
        if even:
            row.append("" if k.centred else " ".join(_share(s) for s in k.shares))
        rows.append(row)
    cells = [header, *rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    left = {1, 2, 4, len(header) - 1} if even else {1, 2, 4}
    lines = []
    for j, r in enumerate(cells):
        lines.append("  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    intro = [
        f"{analysis.source}: {len(ks)} temporal kernels among {analysis.conv_layers} conv layers",
        f"depth: index among the conv layers in {_ORDER_TEXT[analysis.order]}",
        "share of sum |w| at each temporal offset t (0 = centre frame); centre share 1.0: acts like a 2D conv, "
        "1/kt: weight spread evenly over time",
    ]
    intro += [f"note: {n}" for n in analysis.notes]
    return "\n".join(intro + [""] + [line.rstrip() for line in lines])


def render_figure(analysis: TemporalAnalysis) -> go.Figure:
    """A heatmap of weight share by depth x temporal offset over a line of centre share by depth.

    Kernels with even ``kt`` (no centre frame) are left out of the figure and named in its title.
    """
    try:
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots
    except ImportError:  # pragma: no cover
        raise UserError("drawing the figure needs plotly (pip install plotly)") from None
    ks = [k for k in analysis.kernels if k.centred]
    left_out = [k.name for k in analysis.kernels if not k.centred]
    x = [k.name for k in ks]
    offsets = sorted({t for k in ks for t in k.offsets})
    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        row_heights=[0.6, 0.4],
        vertical_spacing=0.04,
        subplot_titles=("share of sum |w| at each temporal offset", "share at the centre offset (t=0)"),
    )
    z = [[dict(zip(k.offsets, k.shares)).get(t) for k in ks] for t in offsets]
    info = [[[k.depth, k.kind, k.kt] for k in ks] for _ in offsets]
    fig.add_trace(
        go.Heatmap(
            x=x,
            y=offsets,
            z=[[None if s is None or not math.isfinite(s) else s for s in row] for row in z],
            customdata=info,
            zmin=0,
            zmax=1,
            colorscale="Viridis",
            colorbar={"title": "share", "len": 0.6, "y": 0.7},
            hovertemplate="%{x}<br>depth %{customdata[0]}, %{customdata[1]}, kt=%{customdata[2]}"
            "<br>t=%{y}: share %{z:.3f}<extra></extra>",
        ),
        row=1,
        col=1,
    )
    centre = [_finite(k.shares[k.kt // 2]) for k in ks]
    fig.add_trace(
        go.Scatter(x=x, y=centre, mode="lines", line={"color": "grey"}, showlegend=False, hoverinfo="skip"),
        row=2,
        col=1,
    )
    labels = {"3d": "full 3D (kt x k x k)", "temporal": "temporal kt x 1 x 1 (sep, 2plus1d)"}
    for kind, symbol in (("3d", "circle"), ("temporal", "diamond")):
        sel = [i for i, k in enumerate(ks) if k.kind == kind]
        if sel:
            fig.add_trace(
                go.Scatter(
                    x=[x[i] for i in sel],
                    y=[centre[i] for i in sel],
                    mode="markers",
                    marker={"symbol": symbol, "size": 9},
                    name=labels[kind],
                    customdata=[[ks[i].depth, ks[i].kt] for i in sel],
                    hovertemplate="%{x}<br>depth %{customdata[0]}, kt=%{customdata[1]}"
                    "<br>centre share %{y:.3f}<extra></extra>",
                ),
                row=2,
                col=1,
            )
    fig.add_trace(
        go.Scatter(
            x=x,
            y=[1 / k.kt for k in ks],
            mode="lines",
            line={"dash": "dash", "color": "black", "width": 1},
            name="spread evenly (1/kt)",
        ),
        row=2,
        col=1,
    )
    title = f"Temporal weight share by depth: {Path(analysis.source).name}"
    if left_out:
        title += f" ({len(left_out)} even-kt kernels not drawn)"
    fig.update_layout(
        title=title, height=760, legend={"orientation": "h", "y": -0.25}, margin={"b": 160}, template="plotly_white"
    )
    fig.update_yaxes(title_text="temporal offset t", dtick=1, row=1, col=1)
    fig.update_yaxes(title_text="centre share", range=[0, 1.05], row=2, col=1)
    fig.update_xaxes(title_text=f"layer, by depth ({_ORDER_TEXT[analysis.order].split(' (')[0]})", row=2, col=1)
    return fig


def check_output_path(path: str | Path) -> Path:
    """Validate an output file name: ``.html`` (figure), ``.csv`` or ``.json`` (data)."""
    p = Path(path)
    if p.suffix.lower() not in OUTPUT_SUFFIXES:
        expected = ", ".join(f"{s} ({what})" for s, what in OUTPUT_SUFFIXES.items())
        raise UserError(f"output file {str(p)!r}: expected a name ending in {expected}, got {p.suffix or 'none'!r}")
    if p.is_dir():
        raise UserError(f"output file {str(p)!r} is a folder; expected a file name ending in .html, .csv or .json")
    return p


def _csv(analysis: TemporalAnalysis) -> str:
    """Long form: one row per kernel and temporal offset."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["depth", "name", "kind", "kt", "shape", "offset_origin", "offset", "share", "centre_share"])
    for k in analysis.kernels:
        origin = "centre" if k.centred else "start"
        centre = "" if k.centre_share is None or not math.isfinite(k.centre_share) else repr(k.centre_share)
        for t, s in zip(k.offsets, k.shares):
            share = repr(s) if math.isfinite(s) else ""
            w.writerow([k.depth, k.name, k.kind, k.kt, "x".join(map(str, k.shape)), origin, t, share, centre])
    return buf.getvalue()


def write_output(analysis: TemporalAnalysis, path: str | Path) -> Path:
    """Write the figure (``.html``, self-contained: opens offline) or the data (``.csv``, ``.json``)
    to ``path``, creating its folder."""
    p = check_output_path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        suffix = p.suffix.lower()
        if suffix == ".html":
            render_figure(analysis).write_html(str(p), include_plotlyjs=True)
        elif suffix == ".csv":
            p.write_text(_csv(analysis), encoding="utf-8")
        else:
            p.write_text(json.dumps(analysis.to_dict(), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    except OSError as e:
        raise UserError(f"output file {str(p)!r}: cannot write it ({e})") from None
    return p
