"""Command-line commands of the search: ``run``, ``status``, ``studies``, ``pareto``."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from ..study.config import DEFAULT_STORAGE, check_storage_url
from ._format import emit, positive, render_table, self_command

__all__ = ["add_parsers"]


def _port(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 1 <= v <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number in 1..65535, got {text!r}")
    return v


def _seconds(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return v


def _accuracy(r: dict[str, Any]) -> str:
    if r["accuracy"] is None:
        return "-"
    se = r.get("accuracy_se")
    return f"{r['accuracy'] * 100:.1f}%" + (f" ± {se * 100:.1f}" if se is not None else "")


def pareto_table(rows: list[dict[str, Any]]) -> str:
    """The front as a table; with several runs per placement, accuracy is the mean ± its
    standard error over ``runs`` runs at ``steps``."""
    several = any((r.get("runs") or 1) > 1 for r in rows)
    return render_table(
        [
            [
                r["trial"],
                _accuracy(r),
                *([r.get("runs") or 1, r.get("steps") or "-"] if several else []),
                f"{r['macs'] / 1e9:,.3f}" if r["macs"] is not None else "-",
                f"{r['params'] / 1e6:,.3f}" if r["params"] is not None else "-",
                r["named"] or "",
                r["placement"],
            ]
            for r in rows
        ],
        [
            "trial",
            "accuracy",
            *(["runs", "steps"] if several else []),
            "GMACs",
            "M params",
            "named",
            "placement (one op per group)",
        ],
        "rr" + ("rr" if several else "") + "rrll",
    )


def pareto_caption(rows: list[dict[str, Any]]) -> str:
    """What the numbers of :func:`pareto_table` are."""
    steps = [int(r["steps"]) for r in rows if r.get("steps") is not None]
    at = f" at {max(steps)} steps (the study's top budget)" if steps else ""
    if any((r.get("runs") or 1) > 1 for r in rows):
        return f"accuracy: mean ± standard error over each placement's runs{at}"
    return f"accuracy: one run per placement{at}"


#: measured on the ground-truth table (docs/ground_truth.md): Kendall tau between pairs of its
#: three trainer seeds at the 80-step proxy, over its 243 placements
SEED_TAU_NOTE = "three trainer seeds of an 80-step proxy rank 243 placements with Kendall tau +0.05 to +0.41"


def reliability(study: Any, rows: list[dict[str, Any]], base: str) -> str:
    """How far to trust the front: the seed noise the study measured, or a pointer to
    ``promote`` where each placement ran once; then the front's hypervolume, as claimed and
    corrected for its luck."""
    from ..study.storage import claim_line, front_claim

    text = _noise_note(study, rows, base)
    claim = claim_line(front_claim(study), f"{self_command()} promote {base} --top {max(3, len(rows))} --seeds 2")
    return text + ("\n" + claim if claim else "")


def _noise_note(study: Any, rows: list[dict[str, Any]], base: str) -> str:
    from ..study.estimates import estimates, pooled_sd

    me = self_command()
    noise = pooled_sd(estimates(study.get_trials(deepcopy=False), study.metric_names))
    if noise is not None:
        sd, k = noise
        text = (
            f"reliability: one run's accuracy varies by {sd * 100:.1f} points (pooled standard deviation over {k} "
            "placements with several runs at their highest budget); front placements closer than about twice "
            "their standard errors are not told apart"
        )
        once = [r for r in rows if r.get("runs", 1) == 1]
        if once:
            # a front picked on single runs is a front of lucky runs: on the ground-truth table such
            # claims came out about 0.05 of the hypervolume too high (docs/ground_truth.md)
            text += (
                f". {len(once)} of the front's {len(rows)} placements ran once at their budget: single runs, "
                f"likely optimistic for a front picked on them; add seeds with: {me} promote {base} "
                f"--top {max(3, len(rows))} --seeds 2"
            )
        return text
    n = max(3, len(rows))
    return (
        "reliability: each placement ran once, so each accuracy is one trainer seed's; proxy scores are noisy "
        f"(on the ground-truth table, {SEED_TAU_NOTE}; docs/ground_truth.md). Before trusting the front, "
        f"re-evaluate it: {me} promote {base} --top {n} --seeds 3"
    )


def cmd_run(args: argparse.Namespace) -> int:
    from ..inspect.figures import push_dashboard_figures
    from ..study.config import load_study_config
    from ..study.driver import SearchDriver
    from ..study.storage import load_study, open_storage, pareto_rows
    from .progress import Progress

    cfg = load_study_config(args.study_toml)
    storage = check_storage_url(args.storage) if args.storage else cfg.storage
    driver = SearchDriver(
        cfg,
        storage=storage,
        study_name=args.study_name,
        trials=args.trials,
        timeout=args.timeout,
        ray_address=args.ray_address,
        on_event=Progress(),
        publish_figures=push_dashboard_figures,
        build_cache=args.build_cache,
        ray_dashboard=args.ray_dashboard,
    )
    print(
        f"study {driver.study_name!r}: space {driver.space.name} ({driver.space.size:,} placements), "
        f"objectives {', '.join(cfg.objectives)} (compute at {driver.target_input}, proxy at {driver.proxy_input}), "
        f"sampler {cfg.sampler}, storage {storage}",
        flush=True,
    )
    result = driver.run()
    print(f"stopped: {result.stop_reason} after {result.elapsed_s:.0f} s", flush=True)
    me = self_command()
    if result.stop_reason.startswith("reached") and getattr(driver, "counted_at_start", 0) >= result.target_trials:
        print(
            f"the study already holds {result.counted} counted trials (its budget is {result.target_trials}): "
            f"to go on, run it with a larger budget, e.g. {me} run {args.study_toml} --trials {result.counted + 20}",
            flush=True,
        )
    study = load_study(open_storage(storage, create=False), driver.study_name)
    rows = pareto_rows(study)
    print(f"\nPareto front ({len(rows)} placements; accuracy up, compute down):")
    print(pareto_table(rows) + "\n" + pareto_caption(rows) if rows else "(no completed feasible trial yet)")
    base = f"--storage {storage} --study {driver.study_name}"
    if rows:
        print(reliability(study, rows, base))
    print(
        "\nnext:\n"
        f"  {me} dashboard {base}              # optuna-dashboard with figures and artifacts\n"
        f"  {me} report {base} -o {driver.study_name}-report.html\n"
        f"  {me} export {base} --pareto -o exported/ --format json,onnx --weights\n"
        f"  {me} pareto {base} --json\n"
        f"  optuna.load_study(study_name={driver.study_name!r}, storage={storage!r})"
    )
    if result.interrupted:  # 130: Ctrl-C; 143: SIGTERM (a job scheduler's stop): the shell conventions
        return 143 if result.signal == "SIGTERM" else 130
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from ..study.storage import claim_line, load_study, open_storage, study_status

    study = load_study(open_storage(args.storage, create=False), args.study)
    st = study_status(study)
    if args.json:
        emit(st)
        return 0
    print(f"study {st['study']} (space {st['space'] or '-'})")
    print("objectives: " + ", ".join(f"{o['name']} ({o['direction']})" for o in st["objectives"]))
    target = f" of {st['target_trials']}" if st["target_trials"] else ""
    print(f"trials: {st['trials']} in storage, {st['counted']}{target} counted (trained, stopped early or failed)")
    runs = st.get("runs_by_steps") or {}
    if len(runs) > 1 or st.get("work") != st["counted"]:
        per = ", ".join(f"{n} at {s} steps" for s, n in runs.items())
        print(f"runs per budget: {per}; training work {st['work']:g}{target} trials' worth at the lowest budget")
    print("by status: " + (", ".join(f"{k} {v}" for k, v in st["by_status"].items()) or "-"))
    best = f"{st['best_accuracy'] * 100:.1f}%" if st["best_accuracy"] is not None else "-"
    print(f"Pareto front: {st['pareto_size']} placements, best accuracy {best}")
    if claim := claim_line(st.get("front_hypervolume")):
        print(claim)
    d = st["driver"]
    if d["state"] == "alive":
        print(f"driver: running (process {d['pid']} on {d['host']}, last heartbeat {d['heartbeat_age_s']:.0f} s ago)")
    elif d["state"] == "dead":
        print(
            f"driver: dead (process {d['pid']} on {d['host']} stopped without closing the study; last heartbeat "
            f"{d['heartbeat_age_s']:.0f} s ago)"
            + (f": its {d['running_trials']} 'running' trial(s) are not running" if d["running_trials"] else "")
        )
    else:
        print("driver: none (no driver runs this study)")
    print(f"on resume: {st['resume']}")
    if st["first_start"] is None:
        print("nothing has run yet")
    else:
        print(f"first start {st['first_start']}, last update {st['last_update']}")
    return 0


def cmd_studies(args: argparse.Namespace) -> int:
    from ..study.storage import open_storage, study_summaries

    rows = study_summaries(open_storage(args.storage, create=False))
    if args.json:
        emit(rows)
        return 0
    if not rows:
        print("(no studies)")
        return 0
    print(
        render_table(
            [[r["study"], r["space"] or "", r["trials"], "/".join(r["directions"]), r["started"] or ""] for r in rows],
            ["study", "space", "trials", "directions", "started"],
            "llrll",
        )
    )
    return 0


def cmd_pareto(args: argparse.Namespace) -> int:
    from ..study.storage import load_study, open_storage, pareto_rows

    study = load_study(open_storage(args.storage, create=False), args.study)
    rows = pareto_rows(study)
    if args.json:
        emit(rows)
        return 0
    print(pareto_table(rows) + "\n" + pareto_caption(rows) if rows else "(no completed feasible trial yet)")
    if rows:
        print(reliability(study, rows, f"--storage {args.storage} --study {args.study}"))
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    import math

    from ..inspect.figures import push_dashboard_figures
    from ..study.config import stored_study_config
    from ..study.driver import SearchDriver
    from ..study.promote import queue_promotions
    from ..study.records import study_space
    from ..study.storage import load_study, open_storage, pareto_rows, study_status
    from .progress import Progress

    storage = open_storage(args.storage, create=False)
    study = load_study(storage, args.study)
    cfg = stored_study_config(study.user_attrs.get("config"), f"study {args.study!r}")
    space, space_text, _ = study_space(study)
    queued = queue_promotions(study, cfg, space, top=args.top, seeds=args.seeds, steps=args.steps)
    if not queued:
        print(f"nothing to queue: the top {args.top} placements already have {args.seeds} run(s) at that budget")
    for q in queued:
        print(f"queued: {q.placement} at {q.steps} steps, trainer seed {q.seed} ({q.kind})")
    if args.no_run:
        me = self_command()
        print(
            f"not trained now (--no-run): `{me} promote --storage {args.storage} --study {args.study} --top {args.top}` or `run` trains them"
        )
        return 0
    st = study_status(study)
    base = cfg.ladder.steps[0]
    added = sum(q.steps / base for q in queued)
    driver = SearchDriver(
        cfg,
        storage=args.storage,
        study_name=args.study,
        trials=max(1, math.ceil(st["work"] + added - 1e-9)),
        ray_address=args.ray_address,
        on_event=Progress(),
        publish_figures=push_dashboard_figures,
        queued_only=True,
        space=space,
        space_text=space_text,
    )
    result = driver.run()
    print(f"stopped: {result.stop_reason} after {result.elapsed_s:.0f} s", flush=True)
    study = load_study(open_storage(args.storage, create=False), args.study)
    rows = pareto_rows(study)
    print(f"\nPareto front ({len(rows)} placements; accuracy up, compute down):")
    print(pareto_table(rows) + "\n" + pareto_caption(rows) if rows else "(no completed feasible trial yet)")
    if rows:
        print(reliability(study, rows, f"--storage {args.storage} --study {args.study}"))
    if result.interrupted:
        return 143 if result.signal == "SIGTERM" else 130
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from ..inspect.report import write_report
    from ..study.storage import load_study, open_storage

    study = load_study(open_storage(args.storage, create=False), args.study)
    out = write_report(study, args.output)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, self-contained: open it in any browser, offline)")
    return 0


_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def cmd_dashboard(args: argparse.Namespace) -> int:
    import socket

    import optuna
    from optuna.artifacts import FileSystemArtifactStore

    from ..errors import UserError
    from ..study.storage import load_study, open_storage

    storage = open_storage(args.storage, create=False)
    path = "/dashboard/"
    folders: list[str] = []
    if args.study:
        study = load_study(storage, args.study)
        path += f"studies/{storage.get_study_id_from_name(study.study_name)}"
        folders = [study.user_attrs["artifact_dir"]] if study.user_attrs.get("artifact_dir") else []
    else:
        for s in optuna.get_all_study_summaries(storage, include_best_trial=False):
            d = s.user_attrs.get("artifact_dir")
            if d and d not in folders:
                folders.append(d)
    store = None
    if folders:
        if len(folders) > 1:
            print(f"note: studies keep artifacts in {len(folders)} folders; serving {folders[0]} (pass --study NAME)")
        if Path(folders[0]).is_dir():
            store = FileSystemArtifactStore(folders[0])
        else:
            print(f"note: the artifact folder {folders[0]} is missing here: trial files will not open")
    try:  # a clear message for a taken port, before the server prints its own traceback
        family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((args.host, args.port))
    except OSError as e:
        raise UserError(f"--host {args.host} --port {args.port}: cannot listen there: {e.strerror or e}") from None
    if args.host not in _LOOPBACK:
        print(f"warning: serving on {args.host}: anyone who can reach this machine can read and change the study")
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"optuna-dashboard on {args.storage}: http://{shown}:{args.port}{path}  (Ctrl-C stops it)", flush=True)
    import optuna_dashboard

    try:
        optuna_dashboard.run_server(storage, host=args.host, port=args.port, artifact_store=store)
    except KeyboardInterrupt:
        pass
    return 0


_STORAGE_HELP = f"SQLAlchemy URL of the study storage (default {DEFAULT_STORAGE})"


def add_parsers(sub: Any) -> None:
    _add_run_parser(sub)
    _add_promote_parser(sub)
    _add_reading_parsers(sub)


def _add_run_parser(sub: Any) -> None:
    p = sub.add_parser("run", help="run (or resume) a multi-objective placement search")
    p.add_argument("study_toml", metavar="STUDY_TOML", help="a study file, e.g. studies/quickstart.toml")
    p.add_argument(
        "--storage",
        metavar="URL",
        help="SQLAlchemy URL (default: the study file's, else sqlite:///placement-search.db)",
    )
    p.add_argument("--study-name", metavar="NAME", help="study name (default: the study file's)")
    p.add_argument("--trials", type=positive, metavar="N", help="stop once the study holds N counted trials")
    p.add_argument("--timeout", type=_seconds, metavar="SECONDS", help="stop proposing after this long")
    p.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="'auto' or host:port to join a Ray cluster, 'local' for a new local instance (default: $RAY_ADDRESS if set, else local)",
    )
    p.add_argument(
        "--build-cache",
        action="store_true",
        help="build a real-video data set's decoded-clip cache where it is missing before training "
        "(default: refuse to start and say so; `placement-search cache build` builds it ahead)",
    )
    p.add_argument(
        "--ray-dashboard",
        nargs="?",
        const=8265,
        type=_port,
        metavar="PORT",
        help="serve Ray's dashboard on 127.0.0.1:PORT (default 8265) for a new local Ray instance "
        "(needs `pip install 'ray[default]'`; a cluster's own dashboard is on its head node)",
    )
    p.set_defaults(func=cmd_run)


def _add_promote_parser(sub: Any) -> None:
    p = sub.add_parser(
        "promote",
        help="re-evaluate a study's front and its near misses with more seeds or a bigger budget",
        description=(
            "Take the K best placements at the study's top budget (the front first, then the nearest to it), "
            "queue N runs of each at S steps (trainer seeds seed, seed+1, ...; runs already done are skipped), "
            "and train them with the study's own configuration. pareto then reports each placement's mean "
            "± standard error at the top budget."
        ),
    )
    p.add_argument("--storage", metavar="URL", default=DEFAULT_STORAGE, help=_STORAGE_HELP)
    p.add_argument("--study", required=True, metavar="NAME")
    p.add_argument("--top", type=positive, required=True, metavar="K", help="how many placements (front first)")
    p.add_argument("--seeds", type=positive, default=3, metavar="N", help="trainer seeds per placement (default 3)")
    p.add_argument("--steps", type=positive, metavar="S", help="training steps (default: the study's top budget)")
    p.add_argument("--no-run", action="store_true", help="only queue the runs (the next run or promote trains them)")
    p.add_argument(
        "--ray-address",
        metavar="ADDRESS",
        help="'local' (a new local Ray instance), 'auto' or an address (join a cluster); default: $RAY_ADDRESS, else local",
    )
    p.set_defaults(func=cmd_promote)


def _add_reading_parsers(sub: Any) -> None:
    """``status``, ``studies``, ``pareto``, ``dashboard`` and ``report``: commands that read a storage."""
    p = sub.add_parser("status", help="progress of a study")
    p.add_argument("--storage", metavar="URL", default=DEFAULT_STORAGE, help=_STORAGE_HELP)
    p.add_argument("--study", required=True, metavar="NAME")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("studies", help="the studies in a storage")
    p.add_argument("--storage", metavar="URL", default=DEFAULT_STORAGE, help=_STORAGE_HELP)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_studies)

    p = sub.add_parser("pareto", help="the Pareto-optimal trials of a study")
    p.add_argument("--storage", metavar="URL", default=DEFAULT_STORAGE, help=_STORAGE_HELP)
    p.add_argument("--study", required=True, metavar="NAME")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_pareto)

    p = sub.add_parser("dashboard", help="serve optuna-dashboard on a study's storage (with its artifacts and figures)")
    p.add_argument("--storage", metavar="URL", default=DEFAULT_STORAGE, help=_STORAGE_HELP)
    p.add_argument("--study", metavar="NAME", help="open this study (and serve its artifact folder)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=_port, default=8080, help="port (default 8080)")
    p.set_defaults(func=cmd_dashboard)

    p = sub.add_parser("report", help="write a self-contained HTML report of a study")
    p.add_argument("--storage", metavar="URL", default=DEFAULT_STORAGE, help=_STORAGE_HELP)
    p.add_argument("--study", required=True, metavar="NAME")
    p.add_argument("-o", "--output", required=True, metavar="REPORT_HTML", help="the HTML file to write")
    p.set_defaults(func=cmd_report)
