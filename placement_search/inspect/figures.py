"""What a study looks like: figure data computed from the study's trials, then rendered with plotly.

Data first (plain dicts and lists, checked by the tests), rendering second. The same figures go
to optuna-dashboard (pushed by the driver while a study runs, see :func:`push_dashboard_figures`)
and into the self-contained HTML report (:mod:`.report`).

* **Pareto front**: proxy accuracy against MACs at the target input, every evaluated trial,
  the front highlighted, each point's placement on hover, named reference placements marked.
* **Hypervolume history**: the hypervolume of the feasible front after each trial (optuna-dashboard
  has none for multi-objective studies). The reference point is accuracy 0 and, for each cost,
  1.1x the largest value among the study's feasible completed trials; costs are divided by
  their reference so the hypervolume is a fraction of the reference box.
* **Placement heatmap**: for each decision (group of positions), the share of Pareto-optimal
  trials using 2D / 3D / separable / R(2+1)D: where in the network time matters.
* **The paper's figure**: accuracy against MACs of the bottom-heavy and top-heavy families (two
  lines), all_2d / all_3d / all_sep, and the searched front, on the same axes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..ops import OP_KINDS, op_label
from ..pareto import dominates, hypervolume
from ..placement import placement_key
from ..study.estimates import reference_box
from ..study.records import trial_attrs

__all__ = [
    "families_data",
    "heatmap_data",
    "hypervolume",
    "hypervolume_data",
    "pareto_data",
    "push_dashboard_figures",
    "study_figures",
]


def _complete(trials: Sequence[Any]) -> list[Any]:
    """Completed, feasible trials that were evaluated (reused copies left out)."""
    from optuna.trial import TrialState

    out = []
    for t in trials:
        if t.state != TrialState.COMPLETE or trial_attrs(t).get("status") == "reused":
            continue
        if any(v > 0 for v in t.constraints.values()):
            continue
        out.append(t)
    return out


def _objective_index(study: Any, name: str) -> int | None:
    names = study.metric_names or []
    return names.index(name) if name in names else None


def _signed(study: Any, values: Sequence[float]) -> list[float]:
    """Values turned into minimisation."""
    return [v if d.name == "MINIMIZE" else -v for v, d in zip(values, study.directions)]


def pareto_indices(points: Sequence[Sequence[float]]) -> list[int]:
    """Indices of the non-dominated points (all objectives minimised; duplicates all kept)."""
    return [i for i, p in enumerate(points) if not any(dominates(q, p) for j, q in enumerate(points) if j != i)]


def pareto_data(study: Any, trials: Sequence[Any] | None = None) -> dict[str, Any]:
    """Every evaluated placement (one point each: the mean of its runs at the highest budget it
    reached, with its standard error), which are on the front (built from the placements at the
    study's top budget only) and which are candidates seen only at a lower budget."""
    from ..study.estimates import estimates, front_estimates, top_steps

    trials = study.get_trials(deepcopy=False) if trials is None else trials
    ests = estimates(trials, study.metric_names)
    top = top_steps(ests)
    on_front = {e.key for e in front_estimates(ests, [d.name.lower() for d in study.directions], top=top)}
    points: list[dict[str, Any]] = [
        {
            "trial": e.trial,
            "accuracy": e.mean,
            "accuracy_se": e.se,
            "runs": e.n,
            "steps": e.steps,
            "macs": e.attrs.get("macs"),
            "params": e.attrs.get("params"),
            "placement": e.placement_string,
            "named": e.attrs.get("named"),
            "on_front": e.key in on_front,
            "candidate": e.steps != top,
        }
        for e in ests.values()
    ]
    ordered = sorted((p for p in points if p["on_front"]), key=lambda p: (p["macs"], -float(p["accuracy"])))
    other = [
        {
            "trial": t.number,
            "status": trial_attrs(t).get("status", t.state.name.lower()),
            "macs": trial_attrs(t).get("macs"),
            "placement": trial_attrs(t).get("placement_string"),
            "accuracy": trial_attrs(t).get("accuracy"),
        }
        for t in trials
        if trial_attrs(t).get("status") in ("early_stopped", "infeasible")
    ]
    return {
        "target_input": study.user_attrs.get("target_input"),
        "top_steps": top,
        "points": points,
        "front": ordered,
        "named": [p for p in points if p["named"]],
        "not_on_front": other,
    }


def hypervolume_data(study: Any, trials: Sequence[Any] | None = None) -> dict[str, Any]:
    """Hypervolume after each trial (in trial-number order), as a fraction of the reference box."""
    trials = study.get_trials(deepcopy=False) if trials is None else trials
    done = _complete(trials)
    ref = reference_box([t.values for t in done], [d.name for d in study.directions])
    scale = [r if d.name == "MINIMIZE" else 1.0 for r, d in zip(ref, study.directions)]
    norm_ref = [1.0 if d.name == "MINIMIZE" else 0.0 for d in study.directions]
    history, seen = [], []
    by_number = {t.number: t for t in done}
    for t in sorted(trials, key=lambda t: t.number):
        if t.number in by_number:
            seen.append([v / s for v, s in zip(_signed(study, t.values), scale)])
        if t.state.is_finished():
            history.append({"trial": t.number, "hypervolume": hypervolume(seen, norm_ref)})
    return {
        "reference": {n: r for n, r in zip(study.metric_names or [], ref)},
        "history": history,
    }


def heatmap_data(study: Any, trials: Sequence[Any] | None = None) -> dict[str, Any]:
    """Share of Pareto-optimal trials using each op kind, per group of positions."""
    trials = study.get_trials(deepcopy=False) if trials is None else trials
    done = _complete(trials)
    front = [done[i] for i in pareto_indices([_signed(study, t.values) for t in done])]
    groups = list(study.user_attrs.get("groups") or (front[0].params.keys() if front else []))
    kinds = tuple(OP_KINDS)  # every registered op kind, in registration order
    counts = {g: dict.fromkeys(kinds, 0) for g in groups}
    for t in front:
        for g in groups:
            token = str(t.params.get(g, ""))
            kind = token.split(":")[0]
            if kind in counts[g]:
                counts[g][kind] += 1
    n = len(front)
    return {
        "groups": groups,
        "kinds": list(kinds),
        "pareto_trials": n,
        "share": [[counts[g][k] / n if n else 0.0 for k in kinds] for g in groups],
        "counts": [[counts[g][k] for k in kinds] for g in groups],
    }


def families_data(study: Any, space: Any, trials: Sequence[Any] | None = None) -> dict[str, Any]:
    """The paper's figure: bottom-heavy and top-heavy families, uniform placements and the front."""
    trials = study.get_trials(deepcopy=False) if trials is None else trials
    done = _complete(trials)
    by_key: dict[str, Any] = {}
    for t in done:
        by_key.setdefault(placement_key(trial_attrs(t).get("placement") or {}), t)
    n_groups = len(space.groups)

    def lookup(name: str) -> dict[str, Any]:
        npl = space.named.get(name)
        t = by_key.get(placement_key(npl.placement)) if npl is not None else None
        return {
            "name": name,
            "trial": t.number if t else None,
            "accuracy": trial_attrs(t).get("accuracy") if t else None,
            "macs": trial_attrs(t).get("macs") if t else None,
        }

    lines = {}
    for family in ("bottom_heavy", "top_heavy"):
        members = [lookup(f"{family}_{k}") for k in range(n_groups + 1)]
        lines[family] = members
    uniform = [lookup(n) for n in ("all_2d", "all_3d", "all_sep") if n in space.named]
    missing = [m["name"] for ms in lines.values() for m in ms if m["trial"] is None] + [
        u["name"] for u in uniform if u["trial"] is None
    ]
    return {
        "family_kind": space.family_kind,
        "lines": lines,
        "uniform": uniform,
        "front": pareto_data(study, trials)["front"],
        "missing": missing,
    }


# -- rendering --------------------------------------------------------------------------------


def _gmacs(v: float | None) -> float | None:
    return None if v is None else v / 1e9


def pareto_figure(data: dict[str, Any]) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure()
    pts = data["points"]
    for label, color, symbol, sel in (
        ("evaluated", "#9aa5b1", "circle", [p for p in pts if not p["on_front"] and not p.get("candidate")]),
        ("candidates (lower budget only)", "#c8ced6", "circle-open", [p for p in pts if p.get("candidate")]),
    ):
        if not sel and label.startswith("candidates"):
            continue
        fig.add_trace(
            go.Scatter(
                x=[_gmacs(p["macs"]) for p in sel],
                y=[p["accuracy"] for p in sel],
                error_y=_error_bars(sel),
                mode="markers",
                name=label,
                marker={"color": color, "size": 7, "symbol": symbol},
                text=[_hover(p) for p in sel],
                hovertemplate="%{text}<br>%{x:.3f} GMACs<extra></extra>",
            )
        )
    front = data["front"]
    fig.add_trace(
        go.Scatter(
            x=[_gmacs(p["macs"]) for p in front],
            y=[p["accuracy"] for p in front],
            error_y=_error_bars(front),
            mode="lines+markers",
            line={"shape": "hv", "color": "#d62728"},
            marker={"size": 9},
            name="Pareto front",
            text=[_hover(p) for p in front],
            hovertemplate="%{text}<br>%{x:.3f} GMACs<extra></extra>",
        )
    )
    named = data["named"]
    if named:
        fig.add_trace(
            go.Scatter(
                x=[_gmacs(p["macs"]) for p in named],
                y=[p["accuracy"] for p in named],
                mode="markers+text",
                marker={"symbol": "diamond-open", "size": 14, "color": "#1f77b4", "line": {"width": 2}},
                text=[p["named"] for p in named],
                textposition="top center",
                name="named placements",
                hovertemplate="%{text}<br>%{x:.3f} GMACs<br>accuracy %{y:.1%}<extra></extra>",
            )
        )
    _label_ends(fig, front)
    fig.update_layout(
        title=_pareto_title(data),
        xaxis_title="GMACs (multiply-adds, batch 1; FLOPs = 2 x MACs)",
        yaxis={"title": {"text": "proxy top-1 accuracy"}, "tickformat": ".0%"},
    )
    return fig


def _error_bars(ps: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """Plotly error bars of the points' standard errors (none when no point has one)."""
    if not any(p.get("accuracy_se") for p in ps):
        return None
    return {"type": "data", "array": [p.get("accuracy_se") or 0.0 for p in ps], "visible": True, "thickness": 1}


def _hover(p: dict[str, Any]) -> str:
    runs = p.get("runs") or 1
    spread = f" ± {p['accuracy_se']:.1%} (s.e.)" if p.get("accuracy_se") else ""
    at = f", {runs} run{'s' if runs > 1 else ''} at {p['steps']} steps" if p.get("steps") else ""
    return f"trial {p['trial']}<br>{p['placement']}<br>accuracy {p['accuracy']:.1%}{spread}{at}"


def _pareto_title(data: dict[str, Any]) -> str:
    return f"Pareto front: proxy accuracy vs MACs at {data.get('target_input') or 'the target input'}" + (
        f" (accuracy at {data['top_steps']} steps, mean ± s.e. of its runs)"
        if any(p.get("accuracy_se") for p in data["points"]) and data.get("top_steps")
        else ""
    )


def _label_ends(fig: Any, front: Sequence[dict[str, Any]]) -> None:
    """Name the cheapest and the most accurate point of a front on the figure itself."""
    if not front:
        return
    ends = {id(p): p for p in (min(front, key=lambda p: p["macs"]), max(front, key=lambda p: p["accuracy"]))}
    for p in ends.values():
        fig.add_annotation(
            x=_gmacs(p["macs"]),
            y=p["accuracy"],
            text=f"trial {p['trial']}: {p['placement']}",
            showarrow=True,
            arrowhead=1,
            ax=0,
            ay=-28,
            font={"size": 10},
        )


def hypervolume_figure(data: dict[str, Any]) -> Any:
    import plotly.graph_objects as go

    h = data["history"]
    fig = go.Figure(
        go.Scatter(
            x=[p["trial"] for p in h],
            y=[p["hypervolume"] for p in h],
            mode="lines+markers",
            line={"shape": "hv"},
            name="hypervolume",
        )
    )
    ref = ", ".join(f"{k} {v:.4g}" for k, v in data["reference"].items())
    fig.update_layout(
        title=f"Hypervolume history (reference point: {ref}; costs scaled by it)",
        xaxis={"title": {"text": "trial"}, "tickformat": "d"},
        yaxis_title="hypervolume (fraction of the reference box)",
    )
    return fig


def heatmap_figure(data: dict[str, Any]) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure(
        go.Heatmap(
            z=data["share"],
            x=[op_label(k) for k in data["kinds"]],
            y=data["groups"],
            zmin=0,
            zmax=1,
            colorscale="Blues",
            colorbar={"title": {"text": "share of<br>Pareto trials"}, "tickformat": ".0%"},
            text=[[f"{c}" for c in row] for row in data["counts"]],
            hovertemplate="%{y}: %{x} in %{z:.0%} of Pareto trials (%{text})<extra></extra>",
        )
    )
    fig.update_layout(
        title=f"Op kind by position on the Pareto front ({data['pareto_trials']} trials): where time matters",
        yaxis={"autorange": "reversed", "title": {"text": "position (input at the top)"}},
    )
    return fig


def families_figure(data: dict[str, Any]) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure()
    colors = {"bottom_heavy": "#ff7f0e", "top_heavy": "#2ca02c"}
    for family, members in data["lines"].items():
        have = [m for m in members if m["trial"] is not None]
        fig.add_trace(
            go.Scatter(
                x=[_gmacs(m["macs"]) for m in have],
                y=[m["accuracy"] for m in have],
                mode="lines+markers+text",
                name=f"{family.replace('_', '-')} K ({data['family_kind']} in the "
                + ("first" if family == "bottom_heavy" else "last")
                + " groups; labels: K)",
                line={"color": colors[family]},
                text=[m["name"].rsplit("_", 1)[-1] for m in have],
                textposition="top center" if family == "bottom_heavy" else "bottom center",
                textfont={"color": colors[family]},
                customdata=[m["name"] for m in have],
                hovertemplate="%{customdata}<br>%{x:.3f} GMACs<br>accuracy %{y:.1%}<extra></extra>",
            )
        )
    uni = [u for u in data["uniform"] if u["trial"] is not None]
    fig.add_trace(
        go.Scatter(
            x=[_gmacs(u["macs"]) for u in uni],
            y=[u["accuracy"] for u in uni],
            mode="markers+text",
            text=[u["name"] for u in uni],
            textposition="bottom center",
            marker={"symbol": "square", "size": 11, "color": "#444"},
            name="uniform",
            hovertemplate="%{text}<br>%{x:.3f} GMACs<br>accuracy %{y:.1%}<extra></extra>",
        )
    )
    front = data["front"]
    fig.add_trace(
        go.Scatter(
            x=[_gmacs(p["macs"]) for p in front],
            y=[p["accuracy"] for p in front],
            mode="lines+markers",
            line={"shape": "hv", "color": "#d62728", "dash": "dot"},
            name="searched Pareto front",
            text=[f"trial {p['trial']}<br>{p['placement']}" for p in front],
            hovertemplate="%{text}<br>%{x:.3f} GMACs<br>accuracy %{y:.1%}<extra></extra>",
        )
    )
    _label_ends(fig, front)
    title = "Bottom-heavy vs top-heavy (Xie et al. 2018) and the searched front"
    if data["missing"]:
        title += f"<br><sup>not evaluated in this study: {', '.join(data['missing'][:8])}"
        title += "..." if len(data["missing"]) > 8 else ""
        title += " (list them in evaluate_first)</sup>"
    fig.update_layout(
        title=title,
        xaxis_title="GMACs (multiply-adds, batch 1)",
        yaxis={"title": {"text": "proxy top-1 accuracy"}, "tickformat": ".0%"},
    )
    return fig


def study_figures(study: Any, space: Any | None = None) -> dict[str, Any]:
    """``{id: plotly figure}`` for a study (the families figure needs its space)."""
    trials = study.get_trials(deepcopy=False)
    figs = {
        "pareto_front": pareto_figure(pareto_data(study, trials)),
        "hypervolume": hypervolume_figure(hypervolume_data(study, trials)),
        "placement_heatmap": heatmap_figure(heatmap_data(study, trials)),
    }
    if space is not None:
        figs["families"] = families_figure(families_data(study, space, trials))
    return figs


def push_dashboard_figures(study: Any, space: Any | None = None) -> list[str]:
    """Save the study's figures as optuna-dashboard plots (overwriting the previous ones)."""
    from optuna_dashboard import save_plotly_graph_object

    ids = []
    for gid, fig in study_figures(study, space).items():
        ids.append(save_plotly_graph_object(study, fig, graph_object_id=f"placement_search_{gid}"))
    return ids
