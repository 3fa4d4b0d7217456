"""The study report: one self-contained HTML file (plotly.js inlined: opens offline, plots
interactive) with the Pareto front, the paper's families figure, the hypervolume history, the
placement heatmap, the table of Pareto architectures and the study's configuration.

:func:`report_data` computes everything (plain data, tested); :func:`render_report` turns it
into HTML.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
from pathlib import Path
from typing import Any

from .._version import __version__
from ..errors import UserError
from ..study.storage import claim_line, pareto_rows, study_status
from . import figures as F

__all__ = ["render_report", "report_data", "study_space", "write_report"]


def study_space(study: Any) -> Any | None:
    """The study's search space (see :func:`placement_search.study.records.study_space`), or
    None where it cannot be rebuilt: the report then leaves out what needs it."""
    from ..study.records import study_space as space_of

    try:
        return space_of(study)[0]
    except UserError:
        return None


def report_data(study: Any) -> dict[str, Any]:
    """Everything the report shows, as data."""
    trials = study.get_trials(deepcopy=False)
    space = study_space(study)
    return {
        "study": study.study_name,
        "generated": _dt.datetime.now().isoformat(timespec="seconds"),
        "package_version": __version__,
        "status": study_status(study),
        "pareto": F.pareto_data(study, trials),
        "families": F.families_data(study, space, trials) if space is not None else None,
        "hypervolume": F.hypervolume_data(study, trials),
        "heatmap": F.heatmap_data(study, trials),
        "pareto_table": [{k: v for k, v in r.items() if k != "placement_json"} for r in pareto_rows(study)],
        "config": study.user_attrs.get("config", {}),
    }


_CSS = """
body { font-family: system-ui, -apple-system, Segoe UI, Roboto, sans-serif; margin: 2rem auto; max-width: 1100px;
       color: #1f2933; padding: 0 1rem; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.25rem; margin-top: 2.2rem; border-bottom: 1px solid #d9e2ec; }
table { border-collapse: collapse; font-size: 0.9rem; } td, th { padding: 0.25rem 0.6rem; border-bottom: 1px solid #e4e7eb; }
th { text-align: left; background: #f5f7fa; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 0.85rem; }
pre { background: #f5f7fa; padding: 0.8rem; overflow-x: auto; }
.figure { margin: 1rem 0; } .note { color: #52606d; font-size: 0.9rem; }
"""


def _table(rows: list[dict[str, Any]]) -> str:
    head = "<tr><th>trial</th><th>accuracy (± s.e.)</th><th>runs</th><th>steps</th><th>GMACs</th><th>GFLOPs</th><th>M params</th><th>named</th><th>placement</th></tr>"
    body = []
    for r in rows:
        acc = f"{r['accuracy'] * 100:.1f}%" if r.get("accuracy") is not None else "-"
        if r.get("accuracy_se") is not None:
            acc += f" ± {r['accuracy_se'] * 100:.1f}"
        gm = f"{r['macs'] / 1e9:,.3f}" if r.get("macs") is not None else "-"
        gf = f"{r['flops'] / 1e9:,.3f}" if r.get("flops") is not None else "-"
        mp = f"{r['params'] / 1e6:,.3f}" if r.get("params") is not None else "-"
        body.append(
            f"<tr><td class='num'>{r['trial']}</td><td class='num'>{acc}</td>"
            f"<td class='num'>{r.get('runs') or 1}</td><td class='num'>{r.get('steps') or '-'}</td><td class='num'>{gm}</td>"
            f"<td class='num'>{gf}</td><td class='num'>{mp}</td><td>{html.escape(str(r.get('named') or ''))}</td>"
            f"<td><code>{html.escape(str(r.get('placement') or ''))}</code></td></tr>"
        )
    return f"<table>{head}{''.join(body)}</table>"


def render_report(data: dict[str, Any]) -> str:
    """HTML for :func:`report_data`'s output."""
    import plotly.offline

    figs = [
        ("pareto_front", "Pareto front", F.pareto_figure(data["pareto"])),
    ]
    if data["families"] is not None:
        figs.append(("families", "Bottom-heavy vs top-heavy (the paper's figure)", F.families_figure(data["families"])))
    figs += [
        ("hypervolume", "Hypervolume history", F.hypervolume_figure(data["hypervolume"])),
        ("placement_heatmap", "Where the Pareto front puts time", F.heatmap_figure(data["heatmap"])),
    ]
    st = data["status"]
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>placement-search report: {html.escape(data['study'])}</title>",
        f"<style>{_CSS}</style>",
        f"<script type='text/javascript'>{plotly.offline.get_plotlyjs()}</script>",
        "</head><body>",
        f"<h1>Study <code>{html.escape(data['study'])}</code></h1>",
        "<p class='note'>"
        + html.escape(
            f"space {st['space']}; {st['trials']} trials ({st['counted']} trained, by status: "
            + ", ".join(f"{k} {v}" for k, v in st["by_status"].items())
            + f"); Pareto front: {st['pareto_size']} placements"
            + (
                f", from those evaluated at the top budget ({data['pareto']['top_steps']} steps)"
                if data["pareto"].get("top_steps")
                else ""
            )
            + (
                f". {c[0].upper()}{c[1:]} (the hypervolume history figure is of single runs, at every budget)"
                if (c := claim_line(st.get("front_hypervolume")))
                else ""
            )
            + ". A placement trained several times (trainer seeds, budgets) shows the mean of its runs at the "
            "highest budget it reached, with the standard error of that mean. Compute is MACs (multiply-adds, batch 1) at the "
            f"target input {data['pareto'].get('target_input')}; FLOPs = 2 x MACs. Accuracy is the proxy run's "
            f"held-out top-1: it ranks placements, it is not a full-training accuracy. "
            f"Generated {data['generated']} by placement-search {data['package_version']}."
        )
        + "</p>",
    ]
    for fid, title, fig in figs:
        fig.update_layout(template="plotly_white", height=520)
        div = fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"fig-{fid}")
        parts.append(f"<h2>{html.escape(title)}</h2><div class='figure' data-figure='{fid}'>{div}</div>")
    parts.append("<h2>Pareto architectures</h2>")
    parts.append(_table(data["pareto_table"]) if data["pareto_table"] else "<p>No completed feasible trial yet.</p>")
    parts.append("<h2>Study configuration</h2>")
    parts.append(f"<pre>{html.escape(json.dumps(data['config'], indent=2, sort_keys=True, default=str))}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(study: Any, output: str | Path) -> Path:
    out = Path(output)
    if out.suffix.lower() not in (".html", ".htm"):
        raise UserError(f"-o {out}: the report is an HTML file; give a name ending in .html")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(render_report(report_data(study)), encoding="utf-8")
    except OSError as e:
        raise UserError(f"-o {out}: cannot write: {e}") from None
    return out
