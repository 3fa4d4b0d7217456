"""A ground-truth table: every placement of a space, evaluated with several trainer seeds at a
proxy budget and a reference budget, as a plain CSV file.

One row per (placement, budget, seed). The columns (see :data:`COLUMNS`) are plain values, so
the table reads in any spreadsheet, pandas or R; this module reads it back into
:class:`Table`, the object the benchmarks and the table evaluator use.

Only the standard library and numpy: reading a table needs neither torch, optuna nor ray.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserError

__all__ = ["COLUMNS", "FORMAT", "Row", "Table", "read_table", "write_table"]

#: the table format's name and version, first line of every table CSV (as a comment)
FORMAT = "placement-search-table/1"

#: fixed columns, in order; then one ``op:<group>`` column per searchable group and one
#: ``family:<name>`` column per class family of the data (synthetic data), then the rest
COLUMNS = (
    "space",
    "placement",
    "budget",
    "seed",
    "status",
    "accuracy",
    "top5",
    "eval_loss",
    "params",
    "macs_target",
    "flops_target",
    "target_input",
    "macs_proxy",
    "proxy_input",
    "steps",
    "batch_size",
    "lr",
    "eval_clips",
    "wall_time_s",
    "train_time_s",
    "device",
    "host",
    "torch",
    "placement_search",
    "data",
    "eval_curve",
    "per_class",
    "trial",
)


@dataclass(frozen=True)
class Row:
    """One evaluation: a placement trained once at one budget with one trainer seed."""

    placement: str  # the space's placement string, one op token per group ("3d 2d sep 2d 2d")
    budget: str  # "proxy", "reference", ...
    seed: int
    status: str  # "ok", "diverged", "out_of_memory"
    accuracy: float | None
    ops: tuple[str, ...]
    macs_target: int
    macs_proxy: int
    params: int
    wall_time_s: float
    train_time_s: float
    steps: int
    families: dict[str, float] = field(default_factory=dict)
    eval_curve: tuple[tuple[int, float], ...] = ()
    per_class: dict[str, float] = field(default_factory=dict)
    extra: dict[str, str] = field(default_factory=dict)


def _num(text: str, where: str, kind: type = float) -> Any:
    if text in ("", None):
        return None
    try:
        v = kind(float(text)) if kind is int else kind(text)
    except ValueError:
        raise UserError(f"{where}: expected a number, got {text!r}") from None
    return v


def write_table(
    path: str | Path, rows: Iterable[Mapping[str, Any]], groups: Sequence[str], families: Sequence[str]
) -> int:
    """Write table rows (dicts keyed by :data:`COLUMNS`, ``op:<group>`` and ``family:<name>``)
    to ``path``; returns the number of rows."""
    p = Path(path)
    header = [
        *COLUMNS[:3],
        *[f"op:{g}" for g in groups],
        *COLUMNS[3:6],
        *[f"family:{f}" for f in families],
        *COLUMNS[6:],
    ]
    n = 0
    tmp = p.with_name(p.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        fh.write(f"# {FORMAT}\n")
        w = csv.DictWriter(fh, fieldnames=header, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: _cell(v) for k, v in r.items()})
            n += 1
    tmp.replace(p)
    return n


def _cell(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if not math.isfinite(v) else f"{v:.6g}"
    if isinstance(v, dict | list | tuple):
        return json.dumps(v, separators=(",", ":"), sort_keys=isinstance(v, dict))
    return v


class Table:
    """A ground-truth table read from CSV.

    Attributes:
        path: where it was read from.
        space: the space's name.
        groups: the searchable groups (one ``op:<group>`` column each).
        families: class families with a per-family accuracy column.
        rows: every row, in file order.
    """

    def __init__(
        self,
        rows: list[Row],
        *,
        space: str,
        groups: tuple[str, ...],
        families: tuple[str, ...],
        path: Path | None = None,
    ) -> None:
        self.rows = rows
        self.space = space
        self.groups = groups
        self.families = families
        self.path = path
        self._by: dict[tuple[str, str], list[Row]] = {}
        for r in rows:
            self._by.setdefault((r.placement, r.budget), []).append(r)
        for v in self._by.values():
            v.sort(key=lambda r: r.seed)
        self._budgets = tuple(dict.fromkeys(r.budget for r in rows))

    # -- what it holds -------------------------------------------------------------------
    @property
    def budgets(self) -> list[str]:
        """The budgets, in the order of their first row."""
        return list(self._budgets)

    def placements(self, budget: str | None = None, *, complete: bool = False) -> list[str]:
        """Placements with at least one ok row at ``budget`` (any budget if None); with
        ``complete``, only those with an ok row at every budget of the table."""
        budgets = self.budgets if budget is None else [budget]
        seen: dict[str, None] = {}
        for r in self.rows:
            if r.budget in budgets and r.status == "ok":
                seen.setdefault(r.placement, None)
        out = list(seen)
        if complete:
            out = [p for p in out if all(self.runs(p, b) for b in self.budgets)]
        return out

    def seeds(self, budget: str) -> list[int]:
        """Every trainer seed with a row at ``budget``."""
        return sorted({r.seed for r in self.rows if r.budget == budget})

    def complete_seeds(self, budget: str) -> list[int]:
        """The seeds with an ok run for every placement at ``budget``: the seeds whose mean is
        comparable across placements while a seed is still being built."""
        places = self.placements(budget)
        return [s for s in self.seeds(budget) if all(self.accuracy(p, budget, s) is not None for p in places)]

    def runs(self, placement: str, budget: str) -> list[Row]:
        """The ok rows of a placement at a budget, by seed."""
        return [r for r in self._by.get((placement, budget), []) if r.status == "ok"]

    def all_runs(self, placement: str, budget: str) -> list[Row]:
        """Every row (failed runs too) of a placement at a budget."""
        return list(self._by.get((placement, budget), []))

    def accuracy(self, placement: str, budget: str, seed: int | None = None) -> float | None:
        """One seed's accuracy, or the mean over seeds (None: no ok run)."""
        runs = self.runs(placement, budget)
        if seed is not None:
            runs = [r for r in runs if r.seed == seed]
        accs = [r.accuracy for r in runs if r.accuracy is not None]
        return statistics.fmean(accs) if accs else None

    def stats(self, placement: str, budget: str, seeds: Iterable[int] | None = None) -> tuple[float, float, int] | None:
        """``(mean, standard deviation, runs)`` of a placement's accuracy at a budget (over
        ``seeds`` only, if given)."""
        keep = None if seeds is None else set(seeds)
        accs = [
            r.accuracy
            for r in self.runs(placement, budget)
            if r.accuracy is not None and (keep is None or r.seed in keep)
        ]
        if not accs:
            return None
        return statistics.fmean(accs), (statistics.stdev(accs) if len(accs) > 1 else 0.0), len(accs)

    def cost(self, placement: str) -> tuple[int, int]:
        """``(target MACs, params)`` of a placement."""
        for b in self.budgets:
            rows = self._by.get((placement, b))
            if rows:
                return rows[0].macs_target, rows[0].params
        raise KeyError(placement)

    def row(self, placement: str, budget: str, seed: int) -> Row | None:
        for r in self._by.get((placement, budget), []):
            if r.seed == seed:
                return r
        return None


def read_table(path: str | Path) -> Table:
    """Read a table CSV written by :func:`write_table` (``placement-search table export``)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise UserError(f"{p}: cannot read the table: {e}") from None
    except UnicodeDecodeError:
        raise UserError(f"{p}: not a table CSV (not UTF-8 text)") from None
    lines = text.splitlines()
    if not lines or not lines[0].startswith("# placement-search-table/"):
        raise UserError(f"{p}: not a placement-search table (its first line should be '# {FORMAT}')")
    if lines[0][2:].strip() != FORMAT:
        raise UserError(f"{p}: table format {lines[0][2:].strip()!r}; this placement-search reads {FORMAT!r}")
    reader = csv.DictReader(lines[1:])
    header = reader.fieldnames or []
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise UserError(f"{p}: missing column(s) {', '.join(missing)}")
    groups = tuple(c[3:] for c in header if c.startswith("op:"))
    families = tuple(c[7:] for c in header if c.startswith("family:"))
    rows: list[Row] = []
    space = ""
    for i, rec in enumerate(reader, start=3):
        where = f"{p}, line {i}"
        space = space or rec["space"]
        if rec["space"] != space:
            raise UserError(f"{where}: space {rec['space']!r}, but earlier rows are of space {space!r}")
        try:
            curve = tuple((int(s), float(a)) for s, a in json.loads(rec["eval_curve"] or "[]"))
            per_class = {str(k): float(v) for k, v in json.loads(rec["per_class"] or "{}").items()}
        except (ValueError, TypeError) as e:
            raise UserError(f"{where}: eval_curve / per_class: not valid JSON: {e}") from None
        rows.append(
            Row(
                placement=rec["placement"],
                budget=rec["budget"],
                seed=_num(rec["seed"], f"{where}: seed", int),
                status=rec["status"],
                accuracy=_num(rec["accuracy"], f"{where}: accuracy"),
                ops=tuple(rec[f"op:{g}"] for g in groups),
                macs_target=_num(rec["macs_target"], f"{where}: macs_target", int),
                macs_proxy=_num(rec["macs_proxy"], f"{where}: macs_proxy", int),
                params=_num(rec["params"], f"{where}: params", int),
                wall_time_s=_num(rec["wall_time_s"], f"{where}: wall_time_s") or 0.0,
                train_time_s=_num(rec["train_time_s"], f"{where}: train_time_s") or 0.0,
                steps=_num(rec["steps"], f"{where}: steps", int) or 0,
                families={
                    f: v for f in families if (v := _num(rec[f"family:{f}"], f"{where}: family:{f}")) is not None
                },
                eval_curve=curve,
                per_class=per_class,
                extra={
                    k: rec[k] for k in ("device", "torch", "placement_search", "data", "host", "trial") if rec.get(k)
                },
            )
        )
    if not rows:
        raise UserError(f"{p}: the table has no rows")
    return Table(rows, space=space, groups=groups, families=families, path=p)
