"""Study storage: any SQLAlchemy URL Optuna accepts (SQLite by default, PostgreSQL for teams),
and the read-only views behind ``status``, ``studies`` and ``pareto``.

Everything a trial records lives in plain Optuna trial attributes, so ``optuna.load_study``
and optuna-dashboard show it without this package.
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..pareto import dominates
from .config import check_storage_url, journal_path
from .lease import driver_state
from .records import COUNTED, FINAL, run_fields, trial_attrs, trial_status

__all__ = ["COUNTED", "FINAL", "open_storage", "pareto_rows", "study_status", "study_summaries", "trial_status"]


def quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def _sqlite_path(url: str) -> Path | None:
    from sqlalchemy.engine import make_url

    if journal_path(url) is not None:
        return None
    u = make_url(url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        return None
    return Path(u.database)


def storage_file(url: str) -> Path | None:
    """The file that holds a study stored in SQLite or in a journal, or None (a server)."""
    return journal_path(url) or _sqlite_path(url)


def _new_sqlite(path: Path) -> None:
    """A new SQLite study file in write-ahead-log mode: a commit appends to the log and syncs it
    (one fsync, with ``synchronous = FULL``: a committed result survives a crash or power loss)
    instead of writing a rollback journal and the database (several), and readers such as the
    dashboard never block the driver. The mode is a property of the file."""
    import sqlite3

    try:
        con = sqlite3.connect(path)
        try:
            con.execute("PRAGMA journal_mode=WAL")
        finally:
            con.close()
    except sqlite3.Error as e:
        raise UserError(f"--storage: cannot create the SQLite file {path}: {e}") from None


def _check_writable(path: Path) -> None:
    """A study the driver must write to: the file (if it exists) and its folder (SQLite writes its
    journal beside it) must be writable. Checked without changing the file."""
    import errno

    if path.exists():
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND)  # opens, writes nothing (refused if immutable)
            os.close(fd)
        except OSError as e:
            why = "read-only or immutable" if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS) else e.strerror
            raise UserError(
                f"--storage: {path} cannot be written ({why}): a study can be read from it (status, pareto, "
                "report, export) but not run; copy it somewhere writable to go on"
            ) from None
    try:
        import tempfile

        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as e:
        raise UserError(
            f"--storage: the folder {path.parent} cannot be written ({e.strerror or e}): SQLite keeps its journal "
            "beside the database"
        ) from None


def open_storage(url: str, *, create: bool) -> Any:
    """An Optuna storage for ``url``.

    Args:
        url: SQLAlchemy URL (``sqlite:///file.db``, ``postgresql+psycopg2://user@host/db``), or
            ``journal:///file.log`` for Optuna's journal storage (an append-only log file).
        create: create a missing SQLite or journal file (and its folder); else a missing file is
            an error, so that a typo in a read-only command does not create an empty database.
    """
    import optuna
    import sqlalchemy.exc

    quiet_optuna()
    url = check_storage_url(url)
    engine_kwargs: dict[str, Any] = {}
    journal = journal_path(url)
    path = journal or _sqlite_path(url)
    if path is not None:
        kind = "journal" if journal is not None else "SQLite"
        if not create and not path.is_file():
            raise UserError(f"--storage: no such {kind} file {path} (from {url})")
        if create:
            if not path.parent.exists():
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                except OSError as e:
                    raise UserError(f"--storage: cannot create the folder of {path}: {e}") from None
                print(f"placement-search: note: created the folder {path.parent} for {path.name}", file=sys.stderr)
            _check_writable(path)
            if not path.exists() and journal is None:
                _new_sqlite(path)
        engine_kwargs["connect_args"] = {"timeout": 60}
    if journal is not None:
        return _open_journal(journal)
    else:
        engine_kwargs["pool_pre_ping"] = True
    try:
        rdb = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
        if path is not None:
            from sqlalchemy import event

            @event.listens_for(rdb.engine, "connect")
            def _durable(dbapi_connection: Any, _record: Any) -> None:  # every commit synced to disk
                dbapi_connection.execute("PRAGMA synchronous=FULL")

            rdb.engine.dispose()  # connections opened so far get the pragma too
    except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError) as e:
        raise UserError(f"--storage: cannot open {url}: {str(e).splitlines()[0]}") from None
    except ImportError as e:  # the database driver for the URL is not installed
        raise UserError(
            f"--storage: {_safe(url)}: no database driver for it ({str(e).splitlines()[0]}); {_driver_hint(url)}"
        ) from None
    except RuntimeError as e:  # schema version mismatch
        raise UserError(f"--storage: {url}: {str(e).splitlines()[0]}") from None
    # the RDB storage itself, not Optuna's caching wrapper (``get_storage``): the driver writes each
    # trial through it, and the wrapper would keep every trial created through it in memory for
    # the whole run, never read again (22 KiB a trial: benchmarks/search_soak.py); a study object
    # made from it (create_study / load_study) still gets its own wrapper for its reads
    return rdb


def _safe(url: str) -> str:
    """A URL with its password hidden, for messages."""
    import re

    return re.sub(r"//([^:/@]*):[^@/]*@", r"//\1:***@", url)


def _driver_hint(url: str) -> str:
    if url.startswith("postgresql"):
        return (
            "PostgreSQL support is an extra: pip install 'placement-search[postgres]' "
            "(psycopg2), and write the URL as postgresql+psycopg2://user@host/db"
        )
    return "install the database driver SQLAlchemy names for this URL"


def _open_journal(path: Path) -> Any:
    """Optuna's journal storage on a log file: every change one appended record, written and
    flushed before the call returns; several processes may append (a file lock orders them)."""
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    try:
        return JournalStorage(JournalFileBackend(str(path)))
    except (OSError, ValueError) as e:
        raise UserError(f"--storage: cannot open the journal file {path}: {e}") from None
    except Exception as e:  # a damaged log: Optuna fails replaying it
        raise UserError(f"--storage: the journal file {path} cannot be read ({type(e).__name__}: {e})") from None


def load_study(storage: Any, name: str) -> Any:
    import optuna

    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
        raise UserError(
            f"--study: no study {name!r} in this storage"
            + (f"; studies: {', '.join(names)}" if names else " (it is empty)")
        ) from None


def _iso(d: _dt.datetime | None) -> str | None:
    return d.isoformat(timespec="seconds") if d else None


def front_claim(study: Any, trials: Sequence[Any] | None = None) -> dict[str, Any] | None:
    """The hypervolume of the front users see, as a fraction of the reference box the dashboard's
    hypervolume history uses (accuracy 0 to 1, each cost 0 to 1.1 x its largest), by the
    placements' mean accuracies and corrected for the luck of a front picked on noisy means (see
    :func:`.estimates.front_hypervolume`; ``corrected`` is None where no placement has two runs at
    the top budget). None: no completed feasible trial."""
    from .estimates import estimates, front_hypervolume, reference_box

    trials = study.get_trials(deepcopy=False) if trials is None else trials
    ests = estimates(trials, study.metric_names)
    if not ests:
        return None
    directions = [d.name.lower() for d in study.directions]
    ref = reference_box([e.values for e in ests.values()], directions)
    box = math.prod(r if d == "minimize" else 1.0 for r, d in zip(ref, directions))
    # exact hypervolumes in three or more objectives cost more: fewer redraws there
    fh = front_hypervolume(ests, directions, ref, study.metric_names, draws=400 if len(directions) <= 2 else 100)
    names = study.metric_names or [f"objective_{i}" for i in range(len(directions))]
    return {
        "hypervolume": fh.value / box,
        "corrected": None if fh.corrected is None else fh.corrected / box,
        "noise_sd": fh.noise_sd,
        "noise_placements": fh.noise_placements,
        "dof": fh.dof,
        "shared_seeds": fh.shared_seeds,
        "steps": fh.steps,
        "draws": fh.draws,
        "reference": dict(zip(names, ref)),
    }


def claim_line(claim: dict[str, Any] | None, promote: str | None = None) -> str | None:
    """The front's hypervolume as the study claims it, and corrected for the front's luck;
    ``promote``: the command that adds seeds to the front (named where it is not corrected)."""
    from .estimates import MIN_DOF

    if claim is None:
        return None
    at = f" at {claim['steps']} steps" if claim.get("steps") else " at the top budget"
    text = (
        f"front hypervolume: {claim['hypervolume']:.4f} of the reference box (accuracy 0 to 1 by each cost 0 to 1.1 "
        "times the study's largest) under the placements' mean accuracies"
    )
    k = claim.get("noise_placements") or 0
    over = f"over {k} placement{'s' if k != 1 else ''}"
    if claim.get("corrected") is None:
        if claim.get("noise_sd") is None:
            why = f"no placement has two runs{at}, so the seed noise{at} is unmeasured"
        else:
            dof = claim["dof"]
            why = (
                f"the seed noise{at} is measured on {dof} degree{'s' if dof != 1 else ''} of freedom ({over}), and the "
                f"correction needs {MIN_DOF}"
            )
        how = f"; add seeds to the front with: {promote}" if promote else "; promote --seeds 2 on the front adds runs"
        return text + f"; not corrected for the front's luck: {why}{how}"
    return (
        text + f"; {claim['corrected']:.4f} corrected for the luck of a front picked on noisy means (a bootstrap over "
        f"the seed noise measured{at}: {claim['noise_sd'] * 100:.1f} points, {over}, {claim['dof']} degrees of "
        "freedom"
        + (
            "; the placements share their trainer seeds, so offsets common to all are left out"
            if claim.get("shared_seeds")
            else ""
        )
        + "): an estimate with less selection bias"
    )


def study_status(study: Any) -> dict[str, Any]:
    """Counts by outcome, Pareto size, best accuracy, times."""
    trials = study.get_trials(deepcopy=False)
    counts: dict[str, int] = {}
    runs: dict[int, int] = {}  # counted runs by budget (steps)
    for t in trials:
        s = trial_status(t)
        counts[s] = counts.get(s, 0) + 1
        if s in COUNTED:
            steps = run_fields(trial_attrs(t))[0] or 0
            runs[steps] = runs.get(steps, 0) + 1
    cfg = study.user_attrs.get("config", {})
    base = (cfg.get("proxy") or {}).get("steps") or (min(runs) if runs else 0)
    work = sum(n * (steps / base if steps and base else 1.0) for steps, n in runs.items())
    names = study.metric_names or [f"objective_{i}" for i in range(len(study.directions))]
    best = pareto_rows(study)
    starts = [t.datetime_start for t in trials if t.datetime_start]
    ends = [t.datetime_complete for t in trials if t.datetime_complete]
    driver = driver_state(study.user_attrs.get("driver"), counts.get("running", 0))
    waiting = counts.get("waiting", 0)
    running = counts.get("running", 0)
    if driver["state"] == "alive":
        resume = "a driver is running this study: a second one is refused"
    else:
        parts = []
        if running:
            parts.append(f"mark the {running} trial(s) left running as driver_died and train their placements again")
        if waiting:
            parts.append(f"train the {waiting} queued placement(s) first")
        target = study.user_attrs.get("target_trials", cfg.get("trials"))
        if target and work >= target - 1e-9:
            parts.append(
                f"stop at once: the study already holds {work:g} of {target} counted trials (pass --trials N to go on)"
            )
        resume = "run again to " + "; ".join(parts) if parts else "run again to continue proposing placements"
    return {
        "study": study.study_name,
        "space": study.user_attrs.get("space"),
        "driver": driver,
        "resume": resume,
        "objectives": [{"name": n, "direction": d.name.lower()} for n, d in zip(names, study.directions)],
        "trials": len(trials),
        "counted": sum(counts.get(s, 0) for s in COUNTED),
        "runs_by_steps": {str(k): v for k, v in sorted(runs.items())},
        "work": round(work, 3),
        "target_trials": study.user_attrs.get("target_trials", cfg.get("trials")),
        "by_status": dict(sorted(counts.items())),
        "pareto_size": len(best),
        "best_accuracy": max((r["accuracy"] for r in best), default=None),
        "front_hypervolume": front_claim(study, trials),
        "first_start": _iso(min(starts, default=None)),
        "last_update": _iso(max(ends + starts, default=None)),
    }


def study_summaries(storage: Any) -> list[dict[str, Any]]:
    import optuna

    out = []
    for s in optuna.get_all_study_summaries(storage, include_best_trial=False):
        out.append(
            {
                "study": s.study_name,
                "space": s.user_attrs.get("space"),
                "directions": [d.name.lower() for d in s.directions],
                "trials": s.n_trials,
                "started": _iso(s.datetime_start),
            }
        )
    return out


def best_trials(study: Any, trials: Sequence[Any] | None = None) -> list[Any]:
    """The study's Pareto-optimal feasible completed trials (as ``study.best_trials``: trials with
    equal values all kept), computed from one read of the trials (``trials``: a snapshot the
    caller already holds, so that what it lists and what it looks up agree while a driver writes)."""
    from optuna.study import StudyDirection
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False) if trials is None else trials
    done = [
        t
        for t in trials
        if t.state == TrialState.COMPLETE and t.values and all(c <= 0 for c in (t.constraints or {}).values())
    ]
    signs = [1.0 if d == StudyDirection.MINIMIZE else -1.0 for d in study.directions]
    points = [[s * v for s, v in zip(signs, t.values)] for t in done]
    return [t for t, p in zip(done, points) if not any(dominates(q, p) for q in points)]


def pareto_rows(study: Any, trials: Sequence[Any] | None = None) -> list[dict[str, Any]]:
    """The front users see, cheapest first: one row per placement, the non-dominated ones among
    those evaluated at the study's top budget, by the mean accuracy of their runs there (see
    :mod:`.estimates`): ``accuracy`` is that mean, ``accuracy_se`` its standard error (None for
    one run), ``runs`` how many runs it averages and ``steps`` their budget. ``trials``: see
    :func:`best_trials`."""
    from .estimates import estimates, front_estimates

    trials = study.get_trials(deepcopy=False) if trials is None else trials
    directions = [d.name.lower() for d in study.directions]
    ests = estimates(trials, study.metric_names)
    by_number = {t.number: t for t in trials}
    rows: list[dict[str, Any]] = []
    for e in front_estimates(ests, directions):
        ua = e.attrs
        rows.append(
            {
                "trial": e.trial,
                "placement": e.placement_string,
                "accuracy": e.mean,
                "accuracy_se": e.se,
                "runs": e.n,
                "steps": e.steps,
                "trials": e.trials,
                "macs": ua.get("macs"),
                "flops": ua.get("flops"),
                "params": ua.get("params"),
                "named": ua.get("named"),
                "latency_ms": ua.get("latency_ms"),
                "status": trial_status(by_number[e.trial]),
                "placement_json": ua.get("placement"),
            }
        )
    rows.sort(key=lambda r: (r["macs"] if r["macs"] is not None else float("inf"), -(r["accuracy"] or 0)))
    return rows
