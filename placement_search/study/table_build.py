"""Build a ground-truth table: train every placement of a space (or of a sub-space) with several
trainer seeds at each of the table's budgets, on Ray, into an ordinary Optuna study.

The table is an ordinary study in ordinary storage (SQLite by default, PostgreSQL for a team),
so optuna-dashboard shows it while it grows, and ``placement-search table export`` turns it into
a CSV. Each finished run is one trial, written by Optuna's public API when it ends (params: the
placement's choices; values: accuracy and the study's cost objectives; user attributes: budget,
seed, curves, per-class accuracy, costs, times, device, versions).

Resumable: a build finds the runs the study already holds and does only the others; a killed
build loses at most its running runs. Order: the cheapest runs first: every placement at the
proxy budget with its first seed, then the next seed, ..., then the
reference budget (within a budget and seed, placements in a fixed shuffled order, so a table
stopped part-way holds a uniform sample), so a table stopped early is as useful as it can be.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import platform
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from typing import Any

from .._version import __version__
from ..errors import UserError
from ..placement import Placement
from ..space import SearchSpace, load_space
from .records import trial_attrs
from .table_run import BuildResult, TableJob, run_on_ray

__all__ = ["BuildResult", "TableJob", "build_table", "table_jobs", "table_placements"]

#: trial statuses that are a final result for a run (not run again by a later build)
FINAL_RUN = ("ok", "diverged", "out_of_memory")


def _kind(token: str) -> str:
    return token.split(":", 1)[0]


def table_placements(
    space: SearchSpace, choices: tuple[str, ...] | None, where: str = "[table] choices"
) -> list[Placement]:
    """Every placement of ``space`` whose op kinds are all in ``choices`` (all of them if None)."""
    per_group = []
    for g in space.groups:
        tokens = [t for t in g.tokens if choices is None or _kind(t) in choices]
        if not tokens:
            kinds = sorted({_kind(t) for t in g.tokens})
            raise UserError(
                f"{where}: {list(choices or ())} leaves group {g.name!r} no choice; its op kinds: {', '.join(kinds)}"
            )
        per_group.append(tokens)
    return [space.from_group_tokens(list(combo), "table placement") for combo in itertools.product(*per_group)]


def table_jobs(cfg: Any, space: SearchSpace, budgets: list[str] | None = None) -> list[TableJob]:
    """Every run of the table, cheapest first (see the module docstring)."""
    table = cfg.table
    if table is None:
        raise UserError(f"{cfg.path or 'study'}: no [table] section: it says which budgets and seeds the table holds")
    placements = table_placements(space, table.choices, f"{cfg.path or 'study'}: [table] choices")
    target = space.costs(frames=cfg.target.frames, size=cfg.target.size, num_classes=cfg.target.num_classes)
    chosen = [b for b in table.budgets if budgets is None or b.name in budgets]
    jobs: list[TableJob] = []
    for b in chosen:
        proxy = space.costs(frames=b.data.frames, size=b.data.size, num_classes=b.data.num_classes())
        per_placement = []
        for p in placements:
            pm, _ = proxy.cost(p)
            tm, tp = target.cost(p)
            per_placement.append((pm, space.placement_string(p), p, tm, tp))
        # within a budget and seed, a fixed shuffle: a table stopped part-way through a budget
        # holds a uniform sample of the placements, not only the cheapest ones
        per_placement.sort(key=lambda x: hashlib.blake2b(x[1].encode(), digest_size=8).digest())
        for seed in b.seeds:
            for pm, ps, p, tm, tp in per_placement:
                jobs.append(TableJob(b.name, seed, p, ps, int(pm), int(tm), int(tp)))
    return jobs


def _identity(cfg: Any, space: SearchSpace) -> dict[str, Any]:
    return {
        "space": space.name,
        "objectives": list(cfg.objectives),
        "target": asdict(cfg.target),
        "budgets": {b.name: b.identity() for b in cfg.table.budgets},
    }


def _importable(
    table: Any, jobs: list[TableJob], budgets: dict[str, Any], done: set[Any]
) -> Iterator[tuple[TableJob, Any]]:
    """The rows of an exported table that are runs of this table not yet in the study; a row
    whose budget differs from this config's budget of the same name is an error."""
    by_key = {j.key: j for j in jobs}
    where = str(table.path)
    for row in table.rows:
        if row.status not in FINAL_RUN:
            continue
        b = budgets.get(row.budget)
        if b is None:
            continue
        data = json.loads(row.extra.get("data") or "{}")
        mine = {k: v for k, v in asdict(b.data).items() if k not in ("cache", "cache_dir", "decode_workers")}
        if row.steps != b.proxy.steps or (data and data != json.loads(json.dumps(mine))):
            raise UserError(
                f"--from {where}: budget {row.budget!r} of the table was trained with other settings "
                f"(steps {row.steps}, data {data}) than the study file's (steps {b.proxy.steps}, data {mine})"
            )
        job = by_key.get((row.budget, row.seed, row.placement))
        if job is not None and job.key not in done:
            yield job, row


def _result_of_row(row: Any) -> dict[str, Any]:
    return {
        "status": row.status,
        "accuracy": row.accuracy,
        "top5": None,
        "eval_loss": None,
        "eval_curve": [list(p) for p in row.eval_curve],
        "per_class_accuracy": dict(row.per_class),
        "steps_done": row.steps,
        "train_time_s": row.train_time_s,
        "device": row.extra.get("device", ""),
        "precision": "",
    }


def _provenance(row: Any, table: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"imported_from": str(table.path)}
    for key in ("torch", "placement_search"):
        if row.extra.get(key):
            out[key] = row.extra[key]
    return out


def _versions() -> dict[str, str]:
    import torch

    return {"torch": torch.__version__, "placement_search": __version__, "python": platform.python_version()}


def build_table(
    cfg: Any,
    *,
    storage: str | None = None,
    study_name: str | None = None,
    ray_address: str | None = None,
    budgets: list[str] | None = None,
    max_runs: int | None = None,
    timeout: float | None = None,
    on_event: Callable[[str, dict[str, Any]], None] | None = None,
    trial_fn: Callable[[dict[str, Any]], Any] | None = None,
    seed_table: Any = None,
    placements: list[tuple[str, str]] | None = None,
) -> BuildResult:
    """Build (or extend, or resume) the table of study config ``cfg`` (which has a ``[table]``).

    Args:
        cfg: the study configuration.
        storage: storage URL (default: the config's).
        study_name: the table study's name (default: the config's name).
        ray_address: ``None``/``"local"``: a new local Ray instance; ``"auto"`` or an address: join.
        budgets: only these budgets (default: all of the table's).
        max_runs: stop after this many new runs.
        timeout: stop starting runs after this many seconds; running ones finish.
        on_event: progress callback ``(kind, info)``.
        trial_fn: what a Ray task runs (default :func:`placement_search.search.worker.run_trial`).
        seed_table: a :class:`~placement_search.table.Table` (an exported table CSV) whose runs are
            taken into the study before building, so a table grows over several sittings and
            machines: each of its rows whose budget matches this config's is recorded as done.
        placements: only the runs of these placements, in this order within each budget and seed:
            ``(placement string, where it was read)`` pairs (``where`` names the file and line
            for an error), e.g. to add a seed first where searches' fronts are.
    """
    build = _Build(cfg, storage=storage, study_name=study_name, budgets=budgets, on_event=on_event)
    result, jobs = build.result, build.jobs
    done = build.done_keys()
    # the listed placements' runs, in their order (a line that is no placement: the error comes
    # before anything is imported)
    listed = _only(jobs, placements) if placements is not None else None
    if seed_table is not None:
        for job, row in _importable(seed_table, jobs, build.by_name, done):
            final = {"result": _result_of_row(row)}
            build.record(
                job, final, None, row.wall_time_s, row.extra.get("host"), imported=_provenance(row, seed_table)
            )
            done.add(job.key)
            result.imported += 1
    todo = [j for j in jobs if j.key not in done]
    result.done_before = len(jobs) - len(todo)
    if listed is not None:
        todo = [j for j in listed if j.key not in done]
    build.emit("open", {"study": build.name, "total": len(jobs), "done": result.done_before, "todo": len(todo)})
    if max_runs is not None:
        todo = todo[:max_runs]
    if not todo:
        result.stop_reason = (
            "the table is complete"
            if result.done_before == len(jobs)
            else "the listed placements' runs are done"
            if placements is not None
            else "nothing to do"
        )
        return result
    run_on_ray(
        cfg, todo, build.spec_of, build.record, result, ray_address, timeout, build.started, build.emit, trial_fn
    )
    result.elapsed_s = time.monotonic() - build.started
    return result


def _only(jobs: list[TableJob], placements: list[tuple[str, str]]) -> list[TableJob]:
    """The jobs of the listed placements: budgets and seeds in the table's order, within each
    the list's order."""
    known = {j.placement_string for j in jobs}
    order: dict[str, int] = {}
    for ps, where in placements:
        if ps not in known:
            example = next(iter(sorted(known)), "")
            raise UserError(
                f"{where}: {ps!r} is not a placement of this table; expected one placement string a line, "
                f"its op kinds a group, e.g. {example!r}"
            )
        order.setdefault(ps, len(order))
    block: dict[tuple[str, int], int] = {}
    for j in jobs:
        block.setdefault((j.budget, j.seed), len(block))
    kept = [j for j in jobs if j.placement_string in order]
    return sorted(kept, key=lambda j: (block[(j.budget, j.seed)], order[j.placement_string]))


class _Build:
    """One sitting of a table build: the table study (created, or checked against the config),
    the jobs, and how a run becomes a spec and a stored trial."""

    def __init__(
        self,
        cfg: Any,
        *,
        storage: str | None,
        study_name: str | None,
        budgets: list[str] | None,
        on_event: Callable[[str, dict[str, Any]], None] | None,
    ) -> None:
        from optuna.distributions import CategoricalDistribution

        from .config import check_study_name
        from .storage import quiet_optuna

        self.emit = on_event or (lambda kind, info: None)
        if cfg.table is None:
            raise UserError(
                f"{cfg.path or 'study'}: no [table] section: it says which budgets and seeds the table holds"
            )
        bad = [o for o in cfg.objectives if o not in ("accuracy", "macs", "params")]
        if bad:
            raise UserError(
                f"{cfg.path or 'study'}: objectives: a table is built for accuracy, macs and params, not {bad}"
            )
        known = [b.name for b in cfg.table.budgets]
        for b in budgets or []:
            if b not in known:
                raise UserError(f"--budget: no budget {b!r} in the table; budgets: {', '.join(known)}")
        quiet_optuna()
        self.cfg = cfg
        self.space = space = load_space(cfg.space)
        self.url = storage or cfg.storage
        self.name = check_study_name(study_name or cfg.name, "--study-name")
        self.jobs = table_jobs(cfg, space, budgets)
        self.study = self._open()
        self.result = BuildResult(self.name, self.url, len(self.jobs), 0)
        self.dists: dict[str, Any] = {g.name: CategoricalDistribution(tuple(g.tokens)) for g in space.groups}
        self.by_name = {b.name: b for b in cfg.table.budgets}
        self.versions = _versions()
        self.started = time.monotonic()
        t_frames, t_size = cfg.target.frames or space.clip[0], cfg.target.size or space.clip[1]
        self.target_input = f"{t_frames}x{t_size}x{t_size}"

    def _open(self) -> Any:
        """The table study: created with its identity, or checked against it (a budget added since
        is merged in; a changed one is an error)."""
        import optuna

        from .config import OBJECTIVES
        from .storage import open_storage

        cfg, space, name, url = self.cfg, self.space, self.name, self.url
        st = open_storage(url, create=True)
        identity = json.loads(json.dumps(_identity(cfg, space)))
        try:
            study = optuna.load_study(study_name=name, storage=st)
        except KeyError:
            directions: list[Any] = [OBJECTIVES[o][0] for o in cfg.objectives]
            study = optuna.create_study(study_name=name, storage=st, directions=directions)
            study.set_metric_names(list(cfg.objectives))
            study.set_user_attr("kind", "table")
            study.set_user_attr("space", space.name)
            study.set_user_attr("groups", [g.name for g in space.groups])
            study.set_user_attr("table_identity", identity)
            study.set_user_attr("config", json.loads(json.dumps(cfg.to_dict(), default=str)))
            study.set_user_attr("placement_search_version", __version__)
            if space.path is not None and os.path.isfile(space.path):
                with open(space.path, encoding="utf-8") as fh:
                    study.set_user_attr("space_toml", fh.read())
            return study
        old = study.user_attrs.get("table_identity")
        if study.user_attrs.get("kind") != "table" or old is None:
            raise UserError(f"study {name!r} in {url} is not a table (it was made by `run`); use --study-name")
        for key in ("space", "objectives", "target"):
            if old.get(key) != identity[key]:
                raise UserError(
                    f"table {name!r} in {url} was built with a different {key}; use --study-name for a new table"
                )
        for b, ident in identity["budgets"].items():
            if b in old["budgets"] and old["budgets"][b] != ident:
                diff = sorted(k for k in ident if ident[k] != old["budgets"][b].get(k))
                raise UserError(
                    f"table {name!r}: budget {b!r} was built with a different {', '.join(diff)}: its rows would not be "
                    "comparable (add a budget under another name, or use --study-name for a new table)"
                )
        merged = {**old["budgets"], **identity["budgets"]}
        if merged != old["budgets"]:
            study.set_user_attr("table_identity", {**identity, "budgets": merged})
        return study

    def done_keys(self) -> set[tuple[str, int, str]]:
        """The runs the study holds already (budget, seed, placement)."""
        done: set[tuple[str, int, str]] = set()
        for t in self.study.get_trials(deepcopy=False):
            ua = trial_attrs(t)
            if t.state.is_finished() and ua.get("status") in FINAL_RUN and "budget" in ua:
                done.add((ua["budget"], int(ua["seed"]), ua["placement_string"]))
        return done

    def spec_of(self, job: TableJob) -> dict[str, Any]:
        """What a worker runs for ``job``."""
        b = self.by_name[job.budget]
        budget = asdict(dataclasses.replace(b.proxy, seed=job.seed))
        budget["threads"] = max(1, int(self.cfg.resources.cpus))
        return {
            "space": self.cfg.space,
            "placement": job.placement.to_dict(),
            "data": asdict(b.data),
            "proxy": budget,
            "target": asdict(self.cfg.target),
            "macs": job.macs,
        }

    def _attrs(self, job: TableJob, wall: float, host: str | None) -> dict[str, Any]:
        """A run's attributes before its outcome: what, at which budget and seed, its costs."""
        b = self.by_name[job.budget]
        return {
            "budget": job.budget,
            "seed": job.seed,
            "placement": job.placement.to_dict(),
            "placement_string": job.placement_string,
            "params": job.params,
            "macs": job.macs,
            "flops": 2 * job.macs,
            "proxy_macs": job.proxy_macs,
            "proxy_flops": 2 * job.proxy_macs,
            "target_input": self.target_input,
            "proxy_input": f"{b.data.frames}x{b.data.size}x{b.data.size}",
            "proxy_budget": {k: v for k, v in asdict(b.proxy).items() if k not in ("threads", "log_every", "device")}
            | {"seed": job.seed},
            "data_config": {
                k: v for k, v in asdict(b.data).items() if k not in ("cache", "cache_dir", "decode_workers")
            },
            "wall_time_s": round(wall, 3),
            "host": host,
            **self.versions,
        }

    def _outcome(
        self, job: TableJob, ua: dict[str, Any], final: dict[str, Any] | None, failure: str | None
    ) -> tuple[Any, list[float] | None, dict[int, float]]:
        """``(state, values, intermediate values)``, with the run's result added to ``ua``."""
        from optuna.trial import TrialState

        if failure is not None:
            ua.update(status="failed", reason=failure)
            return TrialState.FAIL, None, {}
        assert final is not None
        r = final["result"]
        ua.update(
            status=r["status"] if r["status"] != "stopped" else "failed",
            accuracy=r["accuracy"],
            top5=r["top5"],
            eval_loss=r["eval_loss"],
            eval_curve=r["eval_curve"],
            per_class_accuracy=r["per_class_accuracy"],
            steps_done=r["steps_done"],
            train_time_s=round(r["train_time_s"], 3),
            device=r["device"],
            precision=r["precision"],
        )
        if r.get("reason"):
            ua["reason"] = r["reason"]
        intermediate = {int(s): float(a) for s, a in r["eval_curve"]}
        if r["status"] != "ok":
            return TrialState.FAIL, None, intermediate
        m = {"accuracy": r["accuracy"], "macs": job.macs, "params": job.params}
        return TrialState.COMPLETE, [float(m[o]) for o in self.cfg.objectives], intermediate

    def record(
        self,
        job: TableJob,
        final: dict[str, Any] | None,
        failure: str | None,
        wall: float,
        host: str | None,
        imported: dict[str, Any] | None = None,
    ) -> None:
        """Store a finished (or imported) run as one trial of the table study."""
        from optuna.trial import create_trial

        space = self.space
        params = {g.name: tok for g, tok in zip(space.groups, space.placement_string(job.placement).split())}
        ua = self._attrs(job, wall, host)
        state, values, intermediate = self._outcome(job, ua, final, failure)
        if imported is not None:
            ua.update(imported)
        trial = create_trial(
            state=state,
            values=values,
            params=params,
            distributions=self.dists,
            user_attrs=ua,
            intermediate_values=intermediate,
        )
        self.study.add_trial(trial)
        if imported is not None:
            return
        result, status = self.result, ua["status"]
        result.by_budget[job.budget] = result.by_budget.get(job.budget, 0) + (status in FINAL_RUN)
        if status in FINAL_RUN:
            result.done += 1
        else:
            result.failed += 1
        self.emit(
            "run",
            {
                "budget": job.budget,
                "seed": job.seed,
                "placement": job.placement_string,
                "status": status,
                "accuracy": ua.get("accuracy"),
                "wall_time_s": wall,
                "done": result.done_before + result.done,
                "total": len(self.jobs),
                "elapsed_s": time.monotonic() - self.started,
                "reason": ua.get("reason"),
            },
        )
