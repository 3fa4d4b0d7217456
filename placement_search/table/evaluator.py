"""The table evaluator: a worker looks a placement up in a ground-truth table instead of training it.

A study with ``[proxy] evaluator = "table:PATH"`` runs the real driver, samplers, early stopping,
dedup and storage, but each trial's result comes from the table: the row of the placement at the
table's budget with the trial's steps (an error naming the budgets where none has them; the
``proxy`` budget for a spec that names no steps) with a trainer seed
drawn for the trial (from the study's proxy seed and the trial's draw number, so a replay is
reproducible; the runs of one placement at one budget, repeats, take the table's seeds in turn), its held-out accuracy, per-class accuracy,
eval curve (streamed as intermediate evaluations, so early stopping acts on it) and its times.
A placement the table does not hold is a failed trial that says so.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

from ..errors import UserError
from .table import Table, read_table

__all__ = ["TableEvaluator", "table_trial"]

_TABLES: dict[str, Table] = {}
_EVALUATORS: dict[tuple[str, Any], TableEvaluator] = {}


def _table(path: str) -> Table:
    if path not in _TABLES:
        _TABLES[path] = read_table(path)
    return _TABLES[path]


class TableEvaluator:
    """Results of placements from a table.

    Args:
        table: the table.
        budget: which of its budgets answers (default ``proxy``).
    """

    def __init__(self, table: Table, budget: str = "proxy") -> None:
        if budget not in table.budgets:
            raise UserError(f"{table.path}: no budget {budget!r}; budgets: {', '.join(table.budgets)}")
        self.table = table
        self.budget = budget

    @classmethod
    def for_steps(cls, table: Table, steps: int) -> TableEvaluator:
        """The evaluator of the table's budget whose runs have ``steps`` steps."""
        for b in table.budgets:
            ps = table.placements(b)
            if ps and table.runs(ps[0], b)[0].steps == steps:
                return cls(table, b)
        have = []
        for b in table.budgets:
            ps = table.placements(b)
            if ps:
                have.append(f"{b} ({table.runs(ps[0], b)[0].steps} steps)")
        raise UserError(f"{table.path}: no budget of {steps} steps; budgets: {', '.join(have)}")

    def seed_for(self, placement: str, draw: int, repeat: int = 0) -> int | None:
        """The trainer seed a trial gets: one of the placement's seeds, picked by a hash of the
        draw number (uniform over the seeds, reproducible); ``repeat`` j takes the j-th next
        seed, so that the repeats of a placement get distinct seeds while the table has them."""
        runs = sorted(self.table.runs(placement, self.budget), key=lambda r: r.seed)
        if not runs:
            return None
        h = int.from_bytes(hashlib.blake2b(f"{draw}:{placement}".encode(), digest_size=8).digest(), "big")
        return runs[(h + repeat) % len(runs)].seed

    def result(self, placement: str, draw: int, steps: int | None = None, repeat: int = 0) -> dict[str, Any] | None:
        """A ``TrainResult.to_dict()``-shaped result (None: the table does not hold the placement)."""
        seed = self.seed_for(placement, draw, repeat)
        if seed is None:
            return None
        row = self.table.row(placement, self.budget, seed)
        assert row is not None
        return {
            "status": "ok",
            "accuracy": row.accuracy,
            "top5": None,
            "per_class_accuracy": dict(row.per_class),
            "eval_loss": None,
            "loss_curve": [],
            "eval_curve": [list(p) for p in row.eval_curve] or [[row.steps, row.accuracy]],
            "steps_done": row.steps,
            "clips_per_s": 0.0,
            "wall_time_s": row.wall_time_s,
            "train_time_s": row.train_time_s,
            "device": f"table:{row.extra.get('device', '')}",
            "precision": "",
            "reason": None,
            "budget": {"steps": row.steps, "seed": seed, "table": str(self.table.path)},
            "data": {},
            "table_seed": seed,
        }


def table_trial(spec: dict[str, Any], callback: Any) -> Iterator[dict[str, Any]]:
    """The worker's events for a trial answered by the table of ``spec["evaluator"]``.

    ``callback(step, accuracy)`` is the early-stopping check of the trial (True: stop)."""
    path = spec["evaluator"][len("table:") :]
    steps = spec.get("proxy", {}).get("steps")
    if (path, steps) not in _EVALUATORS:
        table = _table(path)
        _EVALUATORS[path, steps] = (
            TableEvaluator(table) if steps is None else TableEvaluator.for_steps(table, int(steps))
        )
    ev = _EVALUATORS[path, steps]
    placement = spec["placement_string"]
    yield {"event": "started", "host": "table", "pid": 0, "device": "table"}
    r = ev.result(placement, int(spec.get("draw", 0)), repeat=int(spec.get("repeat", 0)))
    if r is None:
        raise LookupError(f"the table {path} has no {ev.budget!r} run of placement {placement!r}")
    final_step = r["steps_done"]
    for step, acc in r["eval_curve"]:
        if step >= final_step:
            break
        yield {"event": "eval", "step": step, "accuracy": acc}
        if callback(step, acc):
            stopped = dict(
                r, status="stopped", accuracy=acc, steps_done=step, reason=f"stopped by the caller at step {step}"
            )
            stopped["eval_curve"] = [p for p in r["eval_curve"] if p[0] <= step]
            frac = step / final_step if final_step else 1.0
            stopped["train_time_s"] = r["train_time_s"] * frac
            stopped["wall_time_s"] = r["wall_time_s"] * frac
            yield {"event": "result", "result": stopped}
            return
    yield {"event": "result", "result": r}
