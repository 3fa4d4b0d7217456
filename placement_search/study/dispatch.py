"""What crosses to a worker and what comes back as files: the trial spec a worker runs from
(``worker.run_trial``), and the files a finished trial keeps in the artifact store."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict
from typing import Any

from .config import StudyConfig
from .early_stop import Reference, compact

__all__ = ["proxy_budget", "trial_files", "trial_spec"]


def proxy_budget(cfg: StudyConfig, steps: int | None = None, seed: int | None = None) -> dict[str, Any]:
    """The study's proxy budget as a worker takes it (with its thread count); ``steps`` and
    ``seed``: a run at another rung or with another trainer seed (the schedule's warm-up and
    evaluation interval stay: the cosine decay stretches to the run's steps)."""
    budget = asdict(cfg.proxy)
    budget["threads"] = max(1, int(cfg.resources.cpus))
    if steps is not None:
        budget["steps"] = steps
    if seed is not None:
        budget["seed"] = seed
    return budget


def trial_spec(
    cfg: StudyConfig,
    costs: dict[str, Any],
    *,
    number: int,
    space_text: str | None,
    target_shape: tuple[int, ...],
    reference: list[Reference],
    named: bool,
    fault: str | None = None,
    run: tuple[int, int, int] | None = None,
) -> dict[str, Any]:
    """Everything a worker needs to run one trial (plain data: it crosses to a Ray worker).

    ``reference``: the study's finished curves; only the few cheaper, better ones that can stop
    this run early travel (named placements, the study's fixed points of comparison, run their
    whole budget). ``run``: a follow-up run ``(steps, trainer seed, draw)`` (a repeat or a
    promotion; it runs its whole budget; ``draw``: the placement's first trial number, so that a
    table evaluator gives the runs of one placement distinct seeds)."""
    spec: dict[str, Any] = {
        "space": cfg.space,
        "space_toml": space_text,
        "placement": costs["placement"],
        "data": asdict(cfg.data),
        "proxy": proxy_budget(cfg, *(run[:2] if run else (None, None))),
        "target": asdict(cfg.target),
        "macs": costs["macs"],
        "fault": fault,
        "cost_table": cfg.artifacts.enabled,
        "keep_weights": cfg.artifacts.enabled and cfg.artifacts.keep_weights != "none",
        "evaluator": cfg.evaluator,
        "placement_string": costs["placement_string"],
        # which table seed answers (table evaluator): the runs of a placement at one budget take
        # its seeds in turn from a draw of the placement's first trial
        "draw": cfg.proxy.seed * 1_000_003 + (run[2] if run else number),
        "repeat": (run[1] - cfg.proxy.seed) if run else 0,
    }
    if cfg.needs_latency:
        spec["latency"] = {
            "input_shape": list(target_shape),
            "max_ms": cfg.constraints.max_latency_ms,
            "runs": cfg.latency.runs,
            "warmup": cfg.latency.warmup,
        }
    es = cfg.early_stopping
    if es.enabled and cfg.proxy.eval_every and not named and run is None:
        refs, counts = compact(reference, costs["macs"], keep=max(es.min_dominating, 3))
        spec["early_stopping"] = {
            "margin": es.margin,
            "min_trials": es.min_trials,
            "min_dominating": es.min_dominating,
            "reference": [
                {"trial": r.trial, "macs": r.macs, "curve": {str(s): a for s, a in r.curve.items()}} for r in refs
            ],
            "counts": {str(s): n for s, n in counts.items()},
        }
    return spec


def trial_files(placement: dict[str, Any], final: dict[str, Any], keep_weights: bool) -> list[tuple[str, bytes, str]]:
    """A finished trial's files, ``(filename, data, mimetype)``: its placement, the per-position
    cost table, the learning curve, and (``keep_weights``) the proxy weights."""
    files: list[tuple[str, bytes, str]] = [
        ("placement.json", json.dumps(placement, indent=2).encode(), "application/json")
    ]
    if final.get("cost_table"):
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=["position", "op", "kt", "params", "macs", "flops"])
        w.writeheader()
        w.writerows(final["cost_table"])
        files.append(("costs.csv", buf.getvalue().encode(), "text/csv"))
    if final.get("result"):
        r = final["result"]
        steps = sorted({s for s, _ in r["loss_curve"]} | {s for s, _ in r["eval_curve"]})
        loss, acc = dict(r["loss_curve"]), dict(r["eval_curve"])
        buf = io.StringIO()
        buf.write("step,train_loss,eval_accuracy\n")
        for step in steps:
            buf.write(f"{step},{loss.get(step, '')},{acc.get(step, '')}\n")
        files.append(("curve.csv", buf.getvalue().encode(), "text/csv"))
    if final.get("weights") and keep_weights:
        files.append(("weights.safetensors", final["weights"], "application/octet-stream"))
    return files
