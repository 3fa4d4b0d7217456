"""``placement-search table export``: a table study as a plain CSV and a short data card."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..study.records import trial_attrs
from ..table.table import COLUMNS, write_table

__all__ = ["export_table", "table_rows"]


def _families(data_config: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    if data_config.get("source") != "synthetic":
        return {}
    from ..data.synthetic import FAMILIES

    return dict(FAMILIES)


def table_rows(study: Any) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """Rows of a table study (finished runs, ordered by budget, placement, seed), its groups
    and its class families."""
    if study.user_attrs.get("kind") != "table":
        raise UserError(f"study {study.study_name!r} is not a table (build one with `placement-search table build`)")
    groups = list(study.user_attrs.get("groups") or [])
    families: dict[str, tuple[str, ...]] = {}
    rows = []
    for t in study.get_trials(deepcopy=False):
        ua = trial_attrs(t)
        if not t.state.is_finished() or "budget" not in ua or ua.get("status") in (None, "failed"):
            continue
        fams = _families(ua.get("data_config") or {})
        families.update(fams)
        per_class = ua.get("per_class_accuracy") or {}
        pb = ua.get("proxy_budget") or {}
        dc = ua.get("data_config") or {}
        row: dict[str, Any] = {
            "space": study.user_attrs.get("space"),
            "placement": ua["placement_string"],
            "budget": ua["budget"],
            "seed": ua["seed"],
            "status": ua["status"],
            "accuracy": ua.get("accuracy"),
            "top5": ua.get("top5"),
            "eval_loss": ua.get("eval_loss"),
            "params": ua.get("params"),
            "macs_target": ua.get("macs"),
            "flops_target": ua.get("flops"),
            "target_input": ua.get("target_input"),
            "macs_proxy": ua.get("proxy_macs"),
            "proxy_input": ua.get("proxy_input"),
            "steps": pb.get("steps"),
            "batch_size": pb.get("batch_size"),
            "lr": pb.get("lr"),
            "eval_clips": dc.get("eval_clips"),
            "wall_time_s": ua.get("wall_time_s"),
            "train_time_s": ua.get("train_time_s"),
            "device": ua.get("device"),
            "host": ua.get("host"),
            "torch": ua.get("torch"),
            "placement_search": ua.get("placement_search"),
            "data": json.dumps(dc, sort_keys=True, separators=(",", ":")),
            "eval_curve": ua.get("eval_curve") or [],
            "per_class": per_class,
            "trial": t.number,
        }
        for g, tok in zip(groups, ua["placement_string"].split()):
            row[f"op:{g}"] = tok
        for f, classes in fams.items():
            vals = [per_class[c] for c in classes if c in per_class]
            row[f"family:{f}"] = statistics.fmean(vals) if vals else None
        rows.append(row)
    order = {"proxy": 0, "reference": 2}  # candidate budgets between them, by name
    rows.sort(key=lambda r: (order.get(r["budget"], 1), r["budget"], r["macs_target"] or 0, r["placement"], r["seed"]))
    return rows, groups, list(families)


def export_table(study: Any, out: str | Path, *, command: str | None = None) -> dict[str, Any]:
    """Write ``out`` (CSV) and the data card beside it (same name, ``.md``); returns a summary."""
    out = Path(out)
    if out.suffix.lower() != ".csv":
        raise UserError(f"-o: {out}: expected a .csv file name (the data card is written beside it as .md)")
    if out.exists() and out.is_dir():
        raise UserError(f"-o: {out} is a folder; give a .csv file name")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"-o: cannot create {out.parent}: {e}") from None
    rows, groups, families = table_rows(study)
    if not rows:
        raise UserError(f"table {study.study_name!r} has no finished runs yet")
    write_table(out, rows, groups, families)
    summary = _summary(study, rows)
    card = out.with_suffix(".md")
    card.write_text(_card(study, rows, groups, families, summary, out.name, command), encoding="utf-8")
    return {"csv": str(out), "card": str(card), **summary}


def _summary(study: Any, rows: list[dict[str, Any]]) -> dict[str, Any]:
    budgets: dict[str, dict[str, Any]] = {}
    for r in rows:
        b = budgets.setdefault(
            r["budget"], {"runs": 0, "placements": set(), "seeds": set(), "wall_time_s": 0.0, "train_time_s": 0.0}
        )
        b["runs"] += 1
        b["placements"].add(r["placement"])
        b["seeds"].add(r["seed"])
        b["wall_time_s"] += r["wall_time_s"] or 0.0
        b["train_time_s"] += r["train_time_s"] or 0.0
    return {
        "rows": len(rows),
        "budgets": {
            k: {
                "runs": v["runs"],
                "placements": len(v["placements"]),
                "seeds": sorted(v["seeds"]),
                "wall_time_s": round(v["wall_time_s"], 1),
                "train_time_s": round(v["train_time_s"], 1),
            }
            for k, v in budgets.items()
        },
    }


def _card(
    study: Any,
    rows: list[dict[str, Any]],
    groups: list[str],
    families: list[str],
    summary: dict[str, Any],
    csv_name: str,
    command: str | None,
) -> str:
    cfg = study.user_attrs.get("config") or {}
    table_cfg = cfg.get("table") or {}
    choices = table_cfg.get("choices")
    first: dict[str, dict[str, Any]] = {}
    for r in rows:
        first.setdefault(r["budget"], r)
    devices = sorted({r["device"] for r in rows if r["device"]})
    torches = sorted({r["torch"] for r in rows if r["torch"]})
    versions = sorted({r["placement_search"] for r in rows if r["placement_search"]})
    lines = [
        f"# Ground-truth table `{study.study_name}`",
        "",
        f"Space `{study.user_attrs.get('space')}`"
        + (f", restricted to op kinds {', '.join(choices)}" if choices else ", every placement")
        + f"; decisions: {', '.join(groups)}. File: `{csv_name}` ({len(rows)} rows, one per placement, budget and seed).",
        "",
        "| budget | placements | seeds | runs | steps x batch | lr | clip | held-out clips | train time (s, all runs) | wall time (s, all runs) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, b in summary["budgets"].items():
        r = first[name]
        lines.append(
            f"| {name} | {b['placements']} | {_seeds_cell(rows, name, b['seeds'], b['placements'])} | {b['runs']} | "
            f"{r['steps']} x {r['batch_size']} | "
            f"{r['lr']} | {r['proxy_input']} | {r['eval_clips']} | {b['train_time_s']:,.0f} | {b['wall_time_s']:,.0f} |"
        )
    data = json.loads(rows[0]["data"]) if rows else {}
    lines += [
        "",
        f"Data: `{json.dumps(data, sort_keys=True)}`.",
        f"Target input for MACs/FLOPs: {rows[0]['target_input']} (MACs: multiply-adds of convolutions and linear layers at "
        "batch 1; FLOPs = 2 x MACs). `macs_proxy` is at the budget's proxy clip.",
        f"Devices: {', '.join(devices)}; torch {', '.join(torches)}; placement-search {', '.join(versions)}.",
        "",
        "Columns: `placement` (one op token per decision, in the order above), `op:<decision>`, `budget`, `seed` "
        "(trainer seed: weights, data order), `status`, `accuracy` (held-out top-1 in [0, 1])"
        + (f", `family:<name>` (mean per-class accuracy of {', '.join(families)})" if families else "")
        + ", costs, the budget, times (train: the training loop; wall: the whole run on its worker), device and versions, "
        "`eval_curve` (JSON [[step, accuracy], ...]), `per_class` (JSON), `trial` (the trial number in the table study).",
        "",
        "Reproduce: "
        + (f"`{command}`" if command else "`placement-search table build STUDY_TOML`, then `table export`")
        + ".",
        "",
    ]
    return "\n".join(lines)


def _seeds_cell(rows: list[dict[str, Any]], budget: str, seeds: list[int], placements: int) -> str:
    """The budget's seeds; a seed that not every placement has yet (a table still being built)
    says how many have it."""
    out = []
    for seed in seeds:
        have = len(
            {r["placement"] for r in rows if r["budget"] == budget and r["seed"] == seed and r["status"] == "ok"}
        )
        out.append(str(seed) if have >= placements else f"{seed} ({have} of {placements} placements so far)")
    return ", ".join(out)


__all__ += ["COLUMNS"]
