"""The GPU path, checked in one unattended run: trainer precision and memory format, GPU
sharing between trials, and the Inception space at its proxy clip size.

Part 1, trainer throughput on CUDA (the trainer of ``trainer_throughput.py``, by import): the
``tiny`` space's ``all_3d`` at 16x64x64, batch 64 (that benchmark's CUDA clip). Four settings,
alternated: fp32 / bf16 autocast, each with and without the channels-last 3D memory format;
clips/s (median of the repeats, after an untimed warm-up for cuDNN's autotuning) and peak GPU
memory. Ratios: bf16 / fp32 (both channels-last, the trainer's CUDA default) and channels-last /
not (both bf16). Part 1b, run last and only when the time left allows it (sized by part 3's
step time; not with --quick): the same grid on the ``inception`` space's ``all_3d`` at part 3's
clip and batch (16x112x112, 32), where compute, not kernel launches, sets the pace.

Part 2, the quickstart on a GPU: ``studies/quickstart.toml`` copied to a temporary folder with
a few trials (8; 4 with --quick), ``[proxy] device = "cuda"``, early stopping off (both runs
then train the same placements, the first of ``evaluate_first``, for the whole budget), a
temporary SQLite storage, and run twice with ``placement-search run`` in a subprocess (its own
local Ray instance, under a temporary ``RAY_TMPDIR``): four trials sharing each GPU
(``[resources] gpus = 0.25``) and one trial per GPU (``gpus = 1``). Trials/hour over the
window from the first trial's start to the last trial's end (the Ray start excluded; the
subprocess's whole wall time is printed too) and the GPU utilisation sampled every 0.5 s
(pynvml, else ``nvidia-smi``), averaged over that window. Ratio: shared / exclusive trials/h.

Part 3, the Inception space at the proxy clip of ``studies/inception_minikinetics.toml``
(16x112x112, batch 32, SGD; synthetic clips made on the GPU instead of decoded Kinetics, so
this is the GPU's share of a trial only): the first three placements of that study's
``evaluate_first`` (all_2d, all_3d, all_sep), a short proxy run each (60 steps; 20 with
--quick) in this process. Seconds per trial, clips/s, the study's 3000-step proxy extrapolated
from the step time, and peak GPU memory; ratio: peak reserved memory / a quarter of the GPU
(below 1: four such proxies fit on one GPU, as that study's ``gpus = 0.25`` assumes).

Without CUDA each GPU part prints ``SKIPPED: ...`` and the script still exits 0; part 1 then
runs a CPU smoke (seconds) and part 2's study files are built and validated. ``--cpu-smoke``
also runs part 2's two studies on CPU (2 trials of 6 steps each, gpus = 0; "shared" is two
1-CPU trials at a time, "exclusive" one 2-CPU trial) and part 3 on a small clip, to prove the
plumbing; it skips the GPU parts even where CUDA is present.

    python benchmarks/gpu_check.py                      # full: about 5 minutes on one H100
    python benchmarks/gpu_check.py --quick              # about 2 minutes
    python benchmarks/gpu_check.py --cpu-smoke          # about 1.5 minutes on 2 CPU cores
    python benchmarks/gpu_check.py --out gpu_check.json # the figures as JSON too

A time budget (``--budget``, default 480 s) skips the parts that would not fit. The figures are
written to ``--out`` after each part, so a run cut short still leaves what it measured. The last
line printed is the headline.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import functools
import importlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # trainer_throughput

import torch

from placement_search import load_space
from placement_search.data import SyntheticConfig, SyntheticMotion
from placement_search.train import ProxyBudget, train_proxy

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
tt = importlib.import_module("trainer_throughput")  # benchmarks/trainer_throughput.py

Precision = Literal["auto", "fp32", "bf16"]
NO_CUDA = "no CUDA device (torch.cuda.is_available() is False)"
QUICKSTART = ROOT / "studies" / "quickstart.toml"
#: the Inception study whose proxy part 3 measures
INCEPTION_STUDY = ROOT / "studies" / "inception_minikinetics.toml"


# -- bookkeeping ------------------------------------------------------------------------------


class Report:
    """The figures, written to ``--out`` (if given) after each part."""

    def __init__(self, out: str | None) -> None:
        self.out = Path(out) if out else None
        self.data: dict[str, Any] = {}

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value
        self.save()

    def save(self) -> None:
        if self.out is None:
            return
        self.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.out.with_suffix(self.out.suffix + ".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, default=str) + "\n")
        tmp.replace(self.out)


class Budget:
    """Wall-clock budget of the whole script: parts that would not fit are skipped."""

    def __init__(self, seconds: float) -> None:
        self.t0 = time.perf_counter()
        self.seconds = seconds

    @property
    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self.t0)

    def fits(self, need: float) -> bool:
        return self.left >= need


def skipped(part: str, why: str) -> dict[str, Any]:
    print(f"SKIPPED: {part}: {why}", flush=True)
    return {"skipped": why}


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def mib(n: float) -> float:
    return n / 2**20


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=False
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def machine(cuda: bool) -> dict[str, Any]:
    info: dict[str, Any] = {
        "when": _dt.datetime.now().isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
        "commit": git_commit(),
        "cuda": cuda,
    }
    if cuda:
        props = torch.cuda.get_device_properties(0)
        info.update(
            gpu=torch.cuda.get_device_name(0),
            gpus=torch.cuda.device_count(),
            gpu_memory_mib=round(mib(props.total_memory)),
            cuda_version=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
            bf16_supported=torch.cuda.is_bf16_supported(),
            # what "fp32" means here: torch's defaults, under which cuDNN convolutions may use TF32
            cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
            matmul_precision=torch.get_float32_matmul_precision(),
        )
    return info


# -- GPU utilisation sampler ------------------------------------------------------------------


class GpuSampler:
    """Samples GPU utilisation (%) and memory used (MiB) every ``every`` s in a thread: pynvml
    if installed, else ``nvidia-smi``. ``samples``: (unix time, mean util over GPUs, sum of MiB)."""

    def __init__(self, every: float = 0.5) -> None:
        self.every = every
        self.samples: list[tuple[float, float, float]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.source = "none"
        self._nvml: Any = None
        self._handles: list[Any] = []
        self._ids = self._visible_ids()
        try:
            import pynvml

            pynvml.nvmlInit()
            n = pynvml.nvmlDeviceGetCount()
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in (self._ids or range(n))]
            self._nvml = pynvml
            self.source = "pynvml"
        except Exception:
            if shutil.which("nvidia-smi") and self._query_smi() is not None:
                self.source = "nvidia-smi"

    @staticmethod
    def _visible_ids() -> list[int] | None:
        cvd = os.environ.get("CUDA_VISIBLE_DEVICES")
        if not cvd:
            return None
        try:
            return [int(x) for x in cvd.split(",") if x.strip()]
        except ValueError:  # GPU UUIDs: sample them all
            return None

    def _query_smi(self) -> tuple[float, float] | None:
        cmd = ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits"]
        if self._ids:
            cmd.append("--id=" + ",".join(map(str, self._ids)))
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=5, check=False)
        except (OSError, subprocess.SubprocessError):
            return None
        rows = [line.split(",") for line in out.stdout.strip().splitlines() if line.strip()]
        try:
            vals = [(float(u), float(m)) for u, m in rows]
        except ValueError:
            return None
        if not vals:
            return None
        return statistics.fmean(u for u, _ in vals), sum(m for _, m in vals)

    def _query(self) -> tuple[float, float] | None:
        if self._nvml is not None:
            try:
                util = [self._nvml.nvmlDeviceGetUtilizationRates(h).gpu for h in self._handles]
                used = [self._nvml.nvmlDeviceGetMemoryInfo(h).used / 2**20 for h in self._handles]
                return statistics.fmean(util), sum(used)
            except Exception:
                return None
        if self.source == "nvidia-smi":
            return self._query_smi()
        return None

    def _loop(self) -> None:
        while not self._stop.is_set():
            t = time.time()
            q = self._query()
            if q is not None:
                self.samples.append((t, q[0], q[1]))
            self._stop.wait(max(0.0, self.every - (time.time() - t)))

    def __enter__(self) -> GpuSampler:
        if self.source != "none":
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def summary(self, start: float | None = None, end: float | None = None) -> dict[str, Any]:
        s = [x for x in self.samples if (start is None or x[0] >= start) and (end is None or x[0] <= end)]
        if not s:
            return {"source": self.source, "samples": 0, "util_mean": None, "util_max": None, "mem_peak_mib": None}
        return {
            "source": self.source,
            "samples": len(s),
            "util_mean": round(statistics.fmean(x[1] for x in s), 1),
            "util_max": max(x[1] for x in s),
            "mem_peak_mib": round(max(x[2] for x in s)),
        }


# -- part 1: trainer throughput ---------------------------------------------------------------


def trainer_run(
    space: Any, data: Any, device: str, steps: int, batch: int, precision: Precision, channels_last: bool
) -> tuple[float, dict[str, Any]]:
    """The benchmark's trainer (``trainer_throughput.trainer``); with channels-last off, the same
    budget with ``channels_last=False`` (the function has no such argument)."""
    if channels_last:
        cps, result = tt.trainer(space, data, device, steps, batch, precision)
        return float(cps), result
    budget = ProxyBudget(
        steps=steps, batch_size=batch, eval_every=0, device=device, precision=precision, channels_last=False
    )
    res = train_proxy(lambda: space.build("all_3d", num_classes=data.num_classes), data, budget)
    assert res.status == "ok", res.reason
    return res.clips_per_s, res.to_dict()


SETTINGS: list[tuple[Precision, bool]] = [("fp32", True), ("bf16", True), ("fp32", False), ("bf16", False)]


def label(precision: str, cl: bool) -> str:
    return f"{precision}{' channels-last' if cl else ''}"


def throughput_grid(
    space_name: str, frames: int, size: int, batch: int, steps: int, warmup: int, repeats: int, device: str
) -> dict[str, Any]:
    space = load_space(space_name)
    data = SyntheticMotion(SyntheticConfig(frames=frames, size=size, eval_clips=11))
    print(f"  {space_name} all_3d, clips {frames}x{size}x{size}, batch {batch}, {steps} steps x {repeats}", flush=True)
    runs: dict[str, list[float]] = {label(p, c): [] for p, c in SETTINGS}
    peak: dict[str, float] = {}
    cuda = device.startswith("cuda")
    for p, c in SETTINGS:  # warm-up: cuDNN autotuning for each precision and format, not timed
        trainer_run(space, data, device, warmup, batch, p, c)
    for _ in range(repeats):
        for p, c in SETTINGS:
            if cuda:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            cps, _ = trainer_run(space, data, device, steps, batch, p, c)
            runs[label(p, c)].append(cps)
            if cuda:
                peak[label(p, c)] = max(peak.get(label(p, c), 0.0), mib(torch.cuda.max_memory_allocated()))
    med = {k: statistics.median(v) for k, v in runs.items()}
    for k, v in med.items():
        mem = f", peak GPU memory {peak[k]:.0f} MiB" if k in peak else ""
        print(f"    {k:<18} {v:9.1f} clips/s{mem}  (runs: {', '.join(f'{x:.1f}' for x in runs[k])})", flush=True)
    bf16_ratio = med["bf16 channels-last"] / med["fp32 channels-last"]
    cl_ratio = med["bf16 channels-last"] / med["bf16"]
    cl_fp32 = med["fp32 channels-last"] / med["fp32"]
    print(
        f"    ratio bf16/fp32 (channels-last): {bf16_ratio:.2f}x; channels-last/not (bf16): {cl_ratio:.2f}x, "
        f"(fp32): {cl_fp32:.2f}x",
        flush=True,
    )
    return {
        "space": space_name,
        "placement": "all_3d",
        "clip": [frames, size, size],
        "batch": batch,
        "steps": steps,
        "repeats": repeats,
        "clips_per_s": {k: round(v, 2) for k, v in med.items()},
        "runs": runs,
        "peak_mib": {k: round(v) for k, v in peak.items()},
        "bf16_over_fp32": round(bf16_ratio, 3),
        "channels_last_over_not": round(cl_ratio, 3),
        "channels_last_over_not_fp32": round(cl_fp32, 3),
    }


def part1(quick: bool) -> dict[str, Any]:
    """The trainer benchmark's model and CUDA clip; the Inception grid runs last (:func:`part1b`)."""
    out: dict[str, Any] = {"device": torch.cuda.get_device_name(0)}
    print(
        f"  fp32 is torch's default: cuDNN convolutions TF32 {torch.backends.cudnn.allow_tf32}, "
        f"matmul precision {torch.get_float32_matmul_precision()!r}",
        flush=True,
    )
    out["tiny"] = throughput_grid("tiny", 16, 64, 64, 40 if quick else 100, 10, 1 if quick else 2, "cuda")
    return out


#: part 1b: the Inception space's all_3d at part 3's clip and batch (cuDNN has tuned bf16 channels-last there)
GRID_STEPS, GRID_WARMUP, GRID_REPEATS = 15, 3, 2


def part1b(quick: bool, budget: Budget, p3: dict[str, Any]) -> dict[str, Any]:
    """Part 1's grid on the Inception space (compute-bound, unlike tiny), last: only with the time it
    needs, estimated from part 3's all_3d step time (fp32 and contiguous taken as 3x slower, plus
    cuDNN autotuning of the three new settings)."""
    print("\n== part 1b: trainer throughput on the inception space (run last: it needs the most time)", flush=True)
    if quick:
        return skipped("part 1b (inception grid)", "left out with --quick")
    rows = {t["placement"]: t for t in p3.get("gpu", {}).get("trials", [])}
    step_s = rows.get("all_3d", {}).get("s_per_step")
    if step_s is None:
        return skipped("part 1b (inception grid)", "part 3 measured no all_3d step time to size it by")
    steps = 4 * GRID_WARMUP + GRID_REPEATS * 4 * GRID_STEPS
    need = steps * step_s * 3 + 3 * 20 + 20
    if not budget.fits(need):
        return skipped("part 1b (inception grid)", f"time budget ({budget.left:.0f} s left, ~{need:.0f} s needed)")
    batch = int(p3["gpu"]["batch"])
    return throughput_grid("inception", 16, 112, batch, GRID_STEPS, GRID_WARMUP, GRID_REPEATS, "cuda")


def part1_cpu_smoke() -> dict[str, Any]:
    """The trainer path of part 1 on CPU, a few steps: not a GPU figure (channels-last is a no-op on CPU)."""
    print("  CPU smoke: tiny all_3d, clips 8x32x32, batch 8, 5 steps, fp32 vs bf16 autocast (channels-last: CUDA only)")
    space = load_space("tiny")
    data = SyntheticMotion(SyntheticConfig(frames=8, size=32, eval_clips=11))
    runs: dict[Precision, list[float]] = {"fp32": [], "bf16": []}
    for precision in runs:
        trainer_run(space, data, "cpu", 2, 8, precision, True)  # warm-up
    for _ in range(2):  # alternated, best of two (a shared 2-core machine is noisy)
        for precision in runs:
            c, result = trainer_run(space, data, "cpu", 5, 8, precision, True)
            assert result["precision"] == precision and result["status"] == "ok", result
            runs[precision].append(c)
    cps = {k: max(v) for k, v in runs.items()}
    for precision, c in cps.items():
        print(
            f"    {precision}: {c:7.1f} clips/s (best of {', '.join(f'{x:.1f}' for x in runs[precision])})", flush=True
        )
    ratio = cps["bf16"] / cps["fp32"]
    print(f"    ratio bf16/fp32 on CPU: {ratio:.2f}x (a smoke test of the code path, not a GPU figure)", flush=True)
    return {"cpu_smoke": {"clips_per_s": {k: round(v, 1) for k, v in cps.items()}, "bf16_over_fp32": round(ratio, 3)}}


# -- part 2: the quickstart, shared vs exclusive GPUs -----------------------------------------


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a TOML basic string for what study files hold
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise TypeError(f"no TOML for {v!r}")


def dump_toml(d: dict[str, Any]) -> str:
    """Top-level keys and one level of tables: all a study file has."""
    lines = [f"{k} = {toml_value(v)}" for k, v in d.items() if not isinstance(v, dict)]
    for k, v in d.items():
        if isinstance(v, dict):
            lines.append(f"\n[{k}]")
            lines.extend(f"{kk} = {toml_value(vv)}" for kk, vv in v.items())
    return "\n".join(lines) + "\n"


def study_dict(name: str, trials: int, *, gpus: float, cpus: float, num_gpus: int, smoke: bool) -> dict[str, Any]:
    """The quickstart with the overrides of part 2."""
    d = tomllib.loads(QUICKSTART.read_text())
    d["name"] = name
    d["trials"] = trials
    d["storage"] = f"sqlite:///{name}.db"  # relative: next to the study file, in the temporary folder
    d["timeout"] = "3m"  # stop proposing after this; the subprocess has its own limit too
    d["early_stopping"] = {"enabled": False}  # both runs train the same placements for the whole budget
    d["resources"] = {"cpus": cpus, "gpus": gpus}
    if smoke:
        d["proxy"].update(device="cpu", steps=6, warmup_steps=2, eval_every=3, batch_size=8, eval_batch_size=22)
        d["data"].update(eval_clips=22)
        d["ray"] = {"num_cpus": 2}
    else:
        d["proxy"]["device"] = "cuda"
        d["ray"] = {"num_gpus": num_gpus}
    return d


def write_study(folder: Path, d: dict[str, Any]) -> Path:
    """Write a study file and load it with the package's loader (the same validation ``run`` does)."""
    from placement_search.study.config import load_study_config

    path = folder / f"{d['name']}.toml"
    path.write_text(dump_toml(d))
    cfg = load_study_config(path)
    assert cfg.name == d["name"] and cfg.trials == d["trials"], cfg
    assert cfg.resources.gpus == d["resources"]["gpus"] and cfg.resources.cpus == d["resources"]["cpus"]
    assert cfg.proxy.device == d["proxy"]["device"] and not cfg.early_stopping.enabled
    assert cfg.storage == f"sqlite:///{folder.resolve() / (d['name'] + '.db')}", cfg.storage
    return path


@contextlib.contextmanager
def temp_folder(prefix: str) -> Iterator[Path]:
    # short and under /tmp: Ray's session folder holds unix sockets (a path limit of ~107 bytes)
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def run_cli(study: Path, folder: Path, limit: float, sampler: GpuSampler | None) -> dict[str, Any]:
    """``placement-search run STUDY`` in a subprocess with its own local Ray instance; what it recorded."""
    import optuna

    from placement_search.study.records import trial_attrs
    from placement_search.study.storage import quiet_optuna

    quiet_optuna()
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)
    env["RAY_TMPDIR"] = str(folder)  # Ray's session folder: <RAY_TMPDIR>/ray, removed with the folder
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    cmd = [sys.executable, "-m", "placement_search", "run", str(study), "--ray-address", "local"]
    log = folder / f"{study.stem}.log"
    t0, w0 = time.perf_counter(), time.time()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=folder, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)  # the driver cancels its trials and stops its Ray instance
            try:
                rc = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)  # the process group this function started
                rc = proc.wait()
    wall = time.perf_counter() - t0
    text = log.read_text(errors="replace")
    stopped = [line for line in text.splitlines() if line.startswith("stopped:")]
    out: dict[str, Any] = {"rc": rc, "wall_s": round(wall, 1), "stopped": stopped[-1] if stopped else None}
    if rc != 0:
        out["log_tail"] = text[-3000:]
        print(f"    placement-search run exited {rc}; the end of its output:\n" + text[-3000:], flush=True)
    try:
        st = optuna.load_study(study_name=study.stem, storage=f"sqlite:///{folder / (study.stem + '.db')}")
    except Exception as e:
        out["error"] = f"{type(e).__name__}: {e}"
        return out
    done = [t for t in st.get_trials(deepcopy=False) if t.datetime_start and t.datetime_complete]
    by: dict[str, int] = {}
    for t in st.get_trials(deepcopy=False):
        if t.state == optuna.trial.TrialState.WAITING:  # evaluate_first's placements still queued
            continue
        s = str(trial_attrs(t).get("status", t.state.name))
        by[s] = by.get(s, 0) + 1
    out["by_status"] = by
    out["trials"] = len(done)
    ok = [trial_attrs(t) for t in done if trial_attrs(t).get("status") == "ok"]
    out["ok"] = len(ok)
    if done:
        first = min(t.datetime_start.timestamp() for t in done)  # type: ignore[union-attr]
        last = max(t.datetime_complete.timestamp() for t in done)  # type: ignore[union-attr]
        window = max(last - first, 1e-9)
        out["window_s"] = round(window, 1)
        out["trials_per_h"] = round(len(done) / window * 3600, 1)
        out["trials_per_h_wall"] = round(len(done) / wall * 3600, 1)
        if ok:
            out["train_s_mean"] = round(statistics.fmean(float(a.get("train_time_s", 0.0)) for a in ok), 2)
            out["trial_wall_s_mean"] = round(statistics.fmean(float(a.get("wall_time_s", 0.0)) for a in ok), 2)
            out["devices"] = sorted({str(a.get("device")) for a in ok})
        if sampler is not None:
            out["gpu"] = sampler.summary(first, last)
            out["gpu_whole_run"] = sampler.summary(w0, None)
    return out


def describe_run(name: str, r: dict[str, Any]) -> str:
    if "trials_per_h" not in r:
        return f"    {name}: no finished trial (rc {r.get('rc')}, {r.get('error') or r.get('stopped')})"
    gpu = r.get("gpu") or {}
    util = f", GPU utilisation {gpu['util_mean']:.0f}% mean" if gpu.get("util_mean") is not None else ""
    mem = f", GPU memory used {gpu['mem_peak_mib']} MiB peak" if gpu.get("mem_peak_mib") is not None else ""
    return (
        f"    {name}: {r['trials']} trials ({r['by_status']}) in {r['window_s']:.1f} s -> {r['trials_per_h']:.0f} "
        f"trials/h (with Ray's start, {r['wall_s']:.0f} s: {r['trials_per_h_wall']:.0f}/h); "
        f"train {r.get('train_s_mean', float('nan')):.1f} s of {r.get('trial_wall_s_mean', float('nan')):.1f} s "
        f"per trial{util}{mem}"
    )


def part2(cuda: bool, smoke: bool, quick: bool, trials: int | None, budget: Budget, why: str) -> dict[str, Any]:
    print("\n== part 2: quickstart study, trials sharing a GPU vs one trial per GPU", flush=True)
    n_gpus = torch.cuda.device_count() if cuda else 1
    n = trials or (4 if quick else 8)
    variants = {  # name -> (gpus per trial, cpus per trial)
        "shared": (0.25, 1.0),  # four trials share each GPU
        "exclusive": (1.0, 1.0),  # one trial per GPU
    }
    out: dict[str, Any] = {}
    with temp_folder("gc") as folder:
        # the GPU study files are built and validated everywhere, so a mistake in them shows on CPU
        files = {
            v: write_study(folder, study_dict(f"gpu_{v}", n, gpus=g, cpus=c, num_gpus=n_gpus, smoke=False))
            for v, (g, c) in variants.items()
        }
        print(
            f"  study files valid ({', '.join(p.name for p in files.values())}): quickstart, {n} trials, "
            'device "cuda", early stopping off, gpus per trial 0.25 / 1',
            flush=True,
        )
        out["config_valid"] = True
        if not cuda:
            out.update(skipped("part 2 (quickstart on GPU, shared vs exclusive)", why))
        if smoke:
            smoke_variants = {"shared": (0.0, 1.0), "exclusive": (0.0, 2.0)}  # 2 trials at a time vs 1, on 2 CPUs
            print(
                "  CPU smoke: 2 trials of 6 steps each, gpus = 0; 'shared': two 1-CPU trials at a time, "
                "'exclusive': one 2-CPU trial",
                flush=True,
            )
            res = {}
            for v, (g, c) in smoke_variants.items():
                path = write_study(folder, study_dict(f"cpu_{v}", 2, gpus=g, cpus=c, num_gpus=0, smoke=True))
                res[v] = run_cli(path, folder, min(240.0, max(60.0, budget.left - 30)), None)
                print(describe_run(v, res[v]), flush=True)
                assert res[v]["rc"] == 0 and res[v].get("ok") == 2, res[v]
            ratio = res["shared"]["trials_per_h"] / res["exclusive"]["trials_per_h"]
            print(f"    ratio 'shared'/'exclusive' trials/h on CPU: {ratio:.2f}x (plumbing, not a GPU figure)")
            out["cpu_smoke"] = {**res, "shared_over_exclusive": round(ratio, 3)}
        if not cuda:
            return out
        print(f"  {n_gpus} GPU(s); each run: `placement-search run` in a subprocess, its own local Ray", flush=True)
        for v, path in files.items():
            need = 45.0 + n * 6.0
            if not budget.fits(need + 20):
                out[v] = skipped(f"part 2 {v}", f"time budget ({budget.left:.0f} s left, ~{need:.0f} s needed)")
                continue
            with GpuSampler() as sampler:
                out[v] = run_cli(path, folder, min(300.0, budget.left - 20), sampler)
            print(describe_run(f"{v} (gpus {variants[v][0]:g} per trial)", out[v]), flush=True)
    if "trials_per_h" in out.get("shared", {}) and "trials_per_h" in out.get("exclusive", {}):
        out["shared_over_exclusive"] = round(out["shared"]["trials_per_h"] / out["exclusive"]["trials_per_h"], 3)
        su, eu = (out[v].get("gpu", {}).get("util_mean") for v in ("shared", "exclusive"))
        utils = f"; GPU utilisation {su}% vs {eu}%" if su is not None and eu is not None else ""
        print(f"    ratio shared/exclusive trials/h: {out['shared_over_exclusive']:.2f}x{utils}", flush=True)
    return out


# -- part 3: the Inception space at 16x112x112 ------------------------------------------------


def inception_budget(steps: int, batch: int, device: str) -> ProxyBudget:
    """The proxy of studies/inception_minikinetics.toml, shortened to ``steps``."""
    d = tomllib.loads(INCEPTION_STUDY.read_text())["proxy"]
    d.update(steps=steps, batch_size=batch, warmup_steps=min(10, steps - 1), eval_every=0, device=device)
    return ProxyBudget(**d)


def mark_step(marks: dict[int, float], step: int) -> None:
    marks[step] = time.perf_counter()


def part3(cuda: bool, smoke: bool, quick: bool, budget: Budget, why: str) -> dict[str, Any]:
    print("\n== part 3: inception space, proxy clips 16x112x112 (synthetic, made on the device)", flush=True)
    study = tomllib.loads(INCEPTION_STUDY.read_text())
    full_steps = int(study["proxy"]["steps"])
    out: dict[str, Any] = {}
    if not cuda:
        out.update(skipped("part 3 (inception at 16x112x112 on GPU)", why))
        if not smoke:
            return out
    space = load_space("inception")
    if cuda:
        frames, size, batch, steps = 16, 112, int(study["proxy"]["batch_size"]), 20 if quick else 60
        names = ["all_2d", "all_3d", "all_sep"][: 1 if quick else 3]
        device = "cuda"
        total = torch.cuda.get_device_properties(0).total_memory
    else:
        frames, size, batch, steps, names, device, total = 8, 64, 2, 3, ["all_2d"], "cpu", 0
        print("  CPU smoke: 1 trial, clips 8x64x64, batch 2, 3 steps", flush=True)
    data = SyntheticMotion(SyntheticConfig(frames=frames, size=size, eval_clips=64 if cuda else 11))
    pb = inception_budget(steps, batch, device)
    print(
        f"  {len(names)} trial(s): {', '.join(names)}; {steps} steps of batch {batch}, {pb.optimizer} lr {pb.lr}, "
        f"precision {pb.precision}, channels-last {pb.channels_last}; the study's proxy is {full_steps} steps",
        flush=True,
    )
    trials = []
    for name in names:
        if cuda and not budget.fits(60):
            trials.append({"placement": name, **skipped(f"part 3 {name}", f"time budget ({budget.left:.0f} s left)")})
            continue
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        marks: dict[int, float] = {}  # step -> when the host had queued it
        t0 = time.perf_counter()
        r = train_proxy(
            functools.partial(space.build, name, num_classes=data.num_classes),
            data,
            pb,
            on_step=functools.partial(mark_step, marks),
        )
        sync()
        wall = time.perf_counter() - t0
        row: dict[str, Any] = {
            "placement": name,
            "status": r.status,
            "reason": r.reason,
            "s_per_trial": round(wall, 2),
            "train_s": round(r.train_time_s, 2),
            "clips_per_s": round(r.clips_per_s, 1),
            "precision": r.precision,
        }
        if r.status == "ok" and r.steps_done:
            # the steady step time, past cuDNN's autotuning in the first steps: from the first loss-log
            # point (where the trainer syncs with the GPU, so the host is never more than log_every
            # steps ahead, at either end) to the last step
            a = pb.log_every if r.steps_done >= 2 * pb.log_every else 1
            step_s = (marks[r.steps_done] - marks[a]) / max(1, r.steps_done - a)
            row["s_per_step"] = round(step_s, 4)
            row["s_per_step_with_autotune"] = round(r.train_time_s / r.steps_done, 4)
            row["full_proxy_s_est"] = round(step_s * full_steps + (wall - r.train_time_s), 1)
        if cuda:
            row["peak_allocated_mib"] = round(mib(torch.cuda.max_memory_allocated()))
            row["peak_reserved_mib"] = round(mib(torch.cuda.max_memory_reserved()))
            row["reserved_over_quarter_gpu"] = round(torch.cuda.max_memory_reserved() / (total / 4), 3)
        trials.append(row)
        mem = (
            f", peak GPU memory {row['peak_allocated_mib']} MiB allocated / {row['peak_reserved_mib']} MiB reserved "
            f"({row['reserved_over_quarter_gpu']:.2f} of a quarter GPU)"
            if cuda
            else ""
        )
        est = f", {full_steps}-step proxy ~{row['full_proxy_s_est'] / 60:.1f} min" if "full_proxy_s_est" in row else ""
        print(
            f"    {name:<8} {r.status}: {wall:6.1f} s per trial ({r.train_time_s:.1f} s training, "
            f"{r.clips_per_s:.1f} clips/s){est}{mem}",
            flush=True,
        )
    ran = [t for t in trials if t.get("status") == "ok"]
    key = "gpu" if cuda else "cpu_smoke"
    out[key] = {"clip": [frames, size, size], "batch": batch, "steps": steps, "trials": trials}
    if ran:
        out[key]["s_per_trial_mean"] = round(statistics.fmean(t["s_per_trial"] for t in ran), 2)
        if cuda:
            worst = max(t["reserved_over_quarter_gpu"] for t in ran)
            out[key]["reserved_over_quarter_gpu_max"] = worst
            print(
                f"    ratio peak reserved memory / quarter GPU: {worst:.2f} (below 1: four proxies fit per GPU)",
                flush=True,
            )
    if not cuda:
        assert ran, trials
    return out


# -- main -------------------------------------------------------------------------------------


def headline(cuda: bool, report: dict[str, Any]) -> str:
    def num(x: Any, fmt: str = ".2f") -> str:
        return format(x, fmt) if isinstance(x, int | float) else "n/a"

    p1, p2, p3 = report.get("part1", {}), report.get("part2", {}), report.get("part3", {})
    if not cuda:
        bits = []
        if "cpu_smoke" in p1:
            bits.append(f"CPU smoke trainer bf16/fp32 {num(p1['cpu_smoke']['bf16_over_fp32'])}")
        if p2.get("config_valid"):
            bits.append("study files valid")
        if "cpu_smoke" in p2:
            bits.append(f"CPU study plumbing ok ({num(p2['cpu_smoke']['shared_over_exclusive'])}x)")
        if "cpu_smoke" in p3:
            bits.append(f"inception CPU smoke {num(p3['cpu_smoke'].get('s_per_trial_mean'), '.1f')} s/trial")
        return "gpu_check: skipped (no CUDA)" + ("; " + ", ".join(bits) if bits else "")
    tiny, inc = p1.get("tiny", {}), p1.get("inception", {})
    g3 = p3.get("gpu", {})
    return (
        f"gpu_check: bf16/fp32 {num(tiny.get('bf16_over_fp32'))} tiny, {num(inc.get('bf16_over_fp32'))} inception; "
        f"channels-last {num(tiny.get('channels_last_over_not'))} tiny, {num(inc.get('channels_last_over_not'))} "
        f"inception; shared/exclusive trials/h {num(p2.get('shared_over_exclusive'))}; "
        f"inception 16x112 {num(g3.get('s_per_trial_mean'), '.1f')} s/trial, "
        f"peak/quarter-GPU {num(g3.get('reserved_over_quarter_gpu_max'))}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller parts (about 2 minutes on one GPU)")
    ap.add_argument(
        "--cpu-smoke",
        action="store_true",
        help="skip the GPU parts even with CUDA; run part 2's studies (2 trials) and part 3 on CPU",
    )
    ap.add_argument("--out", metavar="JSON", help="also write the figures to this JSON file (after each part)")
    ap.add_argument("--parts", default="1,2,3", help="which parts to run, e.g. 1,3 (default 1,2,3)")
    ap.add_argument(
        "--trials", type=int, metavar="N", help="trials per study run in part 2 (default 8; 4 with --quick)"
    )
    ap.add_argument("--budget", type=float, default=480.0, metavar="S", help="wall-clock budget in seconds (480)")
    args = ap.parse_args(argv)
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    budget = Budget(args.budget)
    cuda = torch.cuda.is_available() and not args.cpu_smoke
    why = "--cpu-smoke given" if torch.cuda.is_available() else NO_CUDA
    report = Report(args.out)
    info = machine(cuda)
    report.set("machine", info)
    mode = "quick" if args.quick else ("cpu-smoke" if args.cpu_smoke else "full")
    where = f"{info['gpu']} x{info['gpus']}, CUDA {info['cuda_version']}" if cuda else "no CUDA"
    print(f"gpu_check ({mode}): torch {torch.__version__}, {where}, {os.cpu_count()} CPUs", flush=True)

    failed: list[str] = []

    def guarded(part: str, fn: Any, *a: Any) -> dict[str, Any]:
        """A part that raises is reported and the others still run (exit status 1 at the end)."""
        try:
            result: dict[str, Any] = fn(*a)
            return result
        except Exception as e:
            failed.append(part)
            tb = traceback.format_exc()
            print(f"FAILED: {part}: {type(e).__name__}: {e}\n{tb[-2000:]}", flush=True)
            return {"failed": f"{type(e).__name__}: {e}", "traceback": tb[-4000:]}
        finally:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    if "1" in parts:
        print("\n== part 1: trainer throughput, fp32 vs bf16 autocast, channels-last 3D vs not", flush=True)
        if cuda:
            report.set("part1", guarded("part 1", part1, args.quick))
        else:
            p1 = skipped("part 1 (trainer throughput on GPU)", why)
            p1.update(guarded("part 1 CPU smoke", part1_cpu_smoke))
            report.set("part1", p1)
    if "2" in parts:
        report.set("part2", guarded("part 2", part2, cuda, args.cpu_smoke, args.quick, args.trials, budget, why))
    if "3" in parts:
        report.set("part3", guarded("part 3", part3, cuda, args.cpu_smoke, args.quick, budget, why))
    if "1" in parts and cuda:
        p1b = guarded("part 1b", part1b, args.quick, budget, report.data.get("part3", {}))
        report.set("part1", {**report.data.get("part1", {}), "inception": p1b})
    line = headline(cuda, report.data)
    report.set("headline", line)
    report.set("elapsed_s", round(time.perf_counter() - budget.t0, 1))
    if args.out:
        print(f"\nfigures written to {args.out}")
    if failed:
        report.set("failed", failed)
        line += f"; FAILED: {', '.join(failed)}"
    print(f"\n{line}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
