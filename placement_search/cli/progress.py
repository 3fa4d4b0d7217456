"""The live progress display of ``placement-search run`` (stderr)."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

__all__ = ["Progress"]


def _clock(seconds: float) -> str:
    s = int(max(0, seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60:02d}:{s % 60:02d}"


def nodes_line(nodes: list[dict[str, Any]]) -> str:
    """One line on the nodes checked before the first trial (study/nodes.py)."""
    first = nodes[0]
    gpus = sum(n["cuda_devices"] for n in nodes)
    caches = [c for n in nodes for c in n["caches"]]
    built = sum(n["built_s"] for n in nodes)
    data = ""
    if caches:
        data = f"; decoded-clip caches ready ({len(caches)} on {len(nodes)} node(s)"
        data += f", {built:.0f} s spent building)" if built else ")"
    what = f"{len(nodes)} node(s)" if len(nodes) > 1 or first["node"] else first["host"]
    return (
        f"checked {what}: placement-search {first['version']}, torch {first['torch']}, "
        f"{gpus} GPU(s) visible to torch{data}"
    )


class Progress:
    """One line per finished trial, and a status line (trials done / running / failed / pruned,
    Pareto size, elapsed and remaining time): redrawn in place on a terminal, printed every
    ``every`` seconds otherwise."""

    def __init__(self, stream: TextIO | None = None, *, live: bool | None = None, every: float = 30.0) -> None:
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self.every = every
        self._last = 0.0
        self._status = ""

    def _print(self, line: str) -> None:
        if self.live and self._status:
            self.stream.write("\r\x1b[K")
        self.stream.write(line + "\n")
        if self.live and self._status:
            self.stream.write(self._status)
        self.stream.flush()

    def status_line(self, snap: dict[str, Any]) -> str:
        by = snap["by_status"]
        failed = sum(by.get(k, 0) for k in ("failed", "diverged", "out_of_memory", "worker_died"))
        pruned = by.get("early_stopped", 0)
        elapsed = snap["elapsed_s"]
        done, target = snap["counted"], snap["target"]
        if snap.get("work") is not None and abs(snap["work"] - done) > 1e-9:
            done = round(snap["work"], 1)  # rungs: the budget counts training work
        left = []
        # the rate of this run (a resumed study's earlier trials took no time here); none before
        # this run's first trial ends
        new = snap.get("counted_this_run", done)
        if new and target > done:
            left.append(elapsed / new * (target - done))
        if snap.get("timeout"):
            left.append(snap["timeout"] - elapsed)
        remaining = f" | ~{_clock(min(left))} left" if left else ""
        extra = "".join(f" | {by[k]} {k}" for k in ("infeasible", "reused", "repeat") if by.get(k))
        return (
            f"[{done}/{target} trials | {snap['running']} running | {failed} failed | {pruned} pruned{extra}"
            f" | Pareto {snap['pareto']} | {_clock(elapsed)} elapsed{remaining}]"
        )

    def __call__(self, kind: str, info: dict[str, Any]) -> None:
        if kind == "open":
            what = "created" if info["created"] else f"resumed with {info['counted']} counted trials"
            extra = f", {info['recovered']} left running by a stopped driver re-queued" if info["recovered"] else ""
            self._print(f"study {what}{extra}; {info['queued']} placements queued")
        elif kind == "ray":
            res = info["resources"]
            gpus = f", {res.get('GPU', 0):g} GPUs" if res.get("GPU") else ""
            mode = f" ({info['mode']})" if info.get("mode") else ""
            self._print(f"Ray{mode}: {res.get('CPU', 0):g} CPUs{gpus}; {info['slots']} trials at a time")
        elif kind == "start":
            pass
        elif kind == "nodes":
            self._print(nodes_line(info["nodes"]))
        elif kind == "slots":
            self._print(f"Ray: the cluster now holds {info['to']} trials at a time (was {info['from']})")
        elif kind == "end_trial":
            acc = f"{info['accuracy'] * 100:5.1f}%" if info.get("accuracy") is not None else "   -  "
            line = (
                f"trial {info['number']:>4}  {info['status']:<13} acc {acc}  {info['macs'] / 1e9:9.3f} GMACs"
                f"  {info['wall_time_s']:6.1f} s  {info['placement']}"
            )
            if info.get("run") not in (None, "sampled"):
                line += f"  [{info['run']}: {info['steps']} steps, seed {info['seed']}]"
            if info["status"] not in ("ok", "early_stopped") and info.get("reason"):
                line += f"\n            {info['reason']}"
            self._print(line)
        elif kind == "infeasible":
            self._print(f"trial {info['number']:>4}  infeasible    {info['reason']}  {info['placement']}")
        elif kind == "reused":
            self._print(f"trial {info['number']:>4}  reused        result of trial {info['from']}  {info['placement']}")
        elif kind == "retry":
            self._print(f"trial {info['number']:>4}  worker died ({info['error']}); attempt {info['attempt']}")
        elif kind == "warning":
            self._print(f"warning: {info['message']}")
        elif kind == "tick":
            line = self.status_line(info)
            now = time.monotonic()
            if self.live:
                self._status = line
                self.stream.write("\r\x1b[K" + line)
                self.stream.flush()
            elif now - self._last >= self.every:
                self._last = now
                self._print(line)
        elif kind == "end":
            if self.live and self._status:
                self.stream.write("\r\x1b[K")
                self._status = ""
            self.stream.flush()
