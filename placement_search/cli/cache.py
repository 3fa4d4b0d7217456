"""``placement-search cache build|status STUDY_TOML``: a real-video data set's decoded-clip
cache, built ahead of a search on this machine or on every node of a Ray cluster."""

from __future__ import annotations

import argparse
import os
from dataclasses import asdict
from typing import Any

from ._format import emit, positive, render_table

__all__ = ["add_parsers"]


def _nothing_to_cache(data: Any) -> str | None:
    if data.source == "synthetic":
        return "the study trains on the synthetic benchmark, which is generated in memory: nothing to cache"
    if not data.cache:
        return "[data] cache = false: trials decode every clip from the videos; nothing to cache"
    return None


def _reports(args: argparse.Namespace, build: bool) -> tuple[Any, list[Any]]:
    """The study config and one :class:`NodeReport` per machine (this one, or every node)."""
    from ..data.prepare import build_caches, cache_status
    from ..study.config import load_study_config
    from ..study.executor import RayExecutor
    from ..study.nodes import NodeReport, check_payload, node_report

    cfg = load_study_config(args.study_toml)
    if _nothing_to_cache(cfg.data):
        return cfg, []
    address = args.ray_address or os.environ.get("RAY_ADDRESS") or None
    if address in (None, "", "local"):  # this machine, in this process (its progress bar here)
        payload = node_report(check_payload({}, build_cache=False))
        statuses = build_caches(cfg.data, workers=args.workers) if build else cache_status(cfg.data)
        payload["caches"] = [c.to_dict() for c in statuses]
        return cfg, [NodeReport(**payload)]
    data = asdict(cfg.data)
    if args.workers:
        data["decode_workers"] = args.workers
    executor = RayExecutor(lambda spec: iter(()), cfg.resources, cfg.ray, address)
    executor.start()
    try:
        return cfg, executor.check_nodes(check_payload(data, build_cache=build))
    finally:
        executor.stop()


def _show(cfg: Any, reports: list[Any], args: argparse.Namespace, build: bool) -> int:
    if (why := _nothing_to_cache(cfg.data)) is not None:
        if args.json:
            emit({"nodes": [], "note": why})
        else:
            print(why)
        return 0
    missing = [r for r in reports if r.data_error or any(not c["ready"] for c in r.caches)]
    if args.json:
        emit({"nodes": [r.to_dict() for r in reports], "ready": not missing})
    else:
        rows = []
        for r in reports:
            if r.data_error:
                rows.append((r.name, "-", "-", "cannot read the data: " + r.data_error, ""))
            for c in r.caches:
                if c["ready"]:
                    how = f"built in {c['seconds']:.0f} s" if c["seconds"] else "ready"
                    if c["partial"]:
                        how += f" (resumed after {c['partial']} videos)"
                    if c["failed"]:
                        how += f"; {c['failed']} videos unreadable (left out)"
                else:
                    how = "missing" + (f" ({c['partial']} videos done by a stopped build)" if c["partial"] else "")
                rows.append((r.name, c["split"], f"{c['videos']:,}", how, c["path"]))
        print(render_table(rows, ["machine", "split", "videos", "cache", "folder"], "llrll"))
        if missing and not build:
            print(f"\nbuild it with: placement-search cache build {args.study_toml}")
    return 1 if missing else 0


def cmd_cache_build(args: argparse.Namespace) -> int:
    cfg, reports = _reports(args, build=True)
    return _show(cfg, reports, args, build=True)


def cmd_cache_status(args: argparse.Namespace) -> int:
    cfg, reports = _reports(args, build=False)
    return _show(cfg, reports, args, build=False)


def add_parsers(sub: Any) -> None:
    cache = sub.add_parser("cache", help="decode a real-video data set into the clip cache ahead of a search")
    csub = cache.add_subparsers(dest="cache_command", required=True, metavar="COMMAND")
    ray_help = (
        "'auto' or host:port: on every node of that Ray cluster (default: $RAY_ADDRESS if set, else this machine only)"
    )
    p = csub.add_parser(
        "build",
        help="build (or resume) the study's decoded-clip caches, on this machine or every node of a cluster",
        description=(
            "Decode every video of the study's [data] splits once into the decoded-clip cache that trials read "
            "(cache_dir, $PLACEMENT_SEARCH_CACHE or ~/.cache/placement-search/clips). A killed build resumes "
            "where it stopped. With a cluster, each node builds its own cache, one node at a time, so a cache_dir "
            "that all nodes share is built once. Exit status 1 if some cache could not be built."
        ),
    )
    p.add_argument("study_toml", metavar="STUDY_TOML")
    p.add_argument("--ray-address", metavar="ADDR", help=ray_help)
    p.add_argument("--workers", type=positive, metavar="N", help="videos decoded at once (default min(8, cpus))")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_cache_build)
    p = csub.add_parser(
        "status",
        help="whether the study's decoded-clip caches are built (exit status 1 if one is missing)",
    )
    p.add_argument("study_toml", metavar="STUDY_TOML")
    p.add_argument("--ray-address", metavar="ADDR", help=ray_help)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_cache_status, workers=None)
