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
for the figure. Reading the weights and their network order is :mod:`.weights_source`
(:func:`load_weights`, re-exported here).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch

from ..errors import UserError
from .weights_source import LoadedWeights, OrderSource, is_conv_weight, load_weights

if TYPE_CHECKING:
    import plotly.graph_objects as go

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

#: What ``write_output`` writes for each file-name ending.
OUTPUT_SUFFIXES = {".html": "the figure, self-contained HTML", ".csv": "the data as CSV", ".json": "the data as JSON"}
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
        (name for name, value in state_dict.items() if is_conv_weight(value)),
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
    convs = [n for n, v in loaded.state_dict.items() if is_conv_weight(v)]
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
    for trace in _centre_share_traces(ks, x):
        fig.add_trace(trace, row=2, col=1)
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


def _centre_share_traces(ks: Sequence[TemporalKernel], x: list[str]) -> list[Any]:
    """The lower panel: centre share by depth (a line, a marker per kernel kind) and ``1/kt``."""
    import plotly.graph_objects as go

    centre = [_finite(k.shares[k.kt // 2]) for k in ks]
    traces = [go.Scatter(x=x, y=centre, mode="lines", line={"color": "grey"}, showlegend=False, hoverinfo="skip")]
    labels = {"3d": "full 3D (kt x k x k)", "temporal": "temporal kt x 1 x 1 (sep, 2plus1d)"}
    for kind, symbol in (("3d", "circle"), ("temporal", "diamond")):
        sel = [i for i, k in enumerate(ks) if k.kind == kind]
        if sel:
            traces.append(
                go.Scatter(
                    x=[x[i] for i in sel],
                    y=[centre[i] for i in sel],
                    mode="markers",
                    marker={"symbol": symbol, "size": 9},
                    name=labels[kind],
                    customdata=[[ks[i].depth, ks[i].kt] for i in sel],
                    hovertemplate="%{x}<br>depth %{customdata[0]}, kt=%{customdata[1]}"
                    "<br>centre share %{y:.3f}<extra></extra>",
                )
            )
    traces.append(
        go.Scatter(
            x=x,
            y=[1 / k.kt for k in ks],
            mode="lines",
            line={"dash": "dash", "color": "black", "width": 1},
            name="spread evenly (1/kt)",
        )
    )
    return traces


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
