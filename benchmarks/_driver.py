"""Shared by the driver benchmarks (``search_throughput.py``, ``search_soak.py``): the study they
run, a trainer that returns at once, and a private local Ray instance. Not a benchmark itself
(``make bench`` skips files starting with an underscore)."""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
from typing import Any

#: the benchmark study: the ``inception`` space (11 decisions, 7.3M placements), compute at
#: 64x224x224, proxy clips 8x32x32, a MACs budget every placement meets (so each trial carries a
#: constraint), accuracy up and MACs down, the driver's default sampler
STUDY = """
schema_version = 1
name = "{name}"
space = "inception"
sampler = "tpe"
seed = 0
trials = {trials}

[target]
frames = 64
size = 224
num_classes = 400

[data]
source = "synthetic"
frames = 8
size = 32

[constraints]
max_macs = "120G"

[resources]
cpus = 1
"""


def fake_accuracy(placement: dict[str, Any], macs: int) -> float:
    """A made-up proxy accuracy: grows with compute, plus a fixed per-placement jitter."""
    digest = hashlib.blake2b(json.dumps(placement, sort_keys=True).encode(), digest_size=8).digest()
    jitter = int.from_bytes(digest, "little") / 2**64
    return round(0.25 + 0.35 * min(1.0, macs / 1.2e11) + 0.2 * jitter, 4)


def fake_result(spec: dict[str, Any]) -> dict[str, Any]:
    """What the proxy trainer would return, for :func:`fake_accuracy`."""
    acc = fake_accuracy(spec["placement"], spec["macs"])
    return {
        "status": "ok",
        "accuracy": acc,
        "top5": min(1.0, acc + 0.3),
        "eval_curve": [[100, round(acc * 0.8, 4)], [200, acc]],
        "loss_curve": [[0, 2.4], [100, 1.6], [200, 1.2]],
        "per_class_accuracy": {},
        "steps_done": 200,
        "clips_per_s": 0.0,
        "train_time_s": 0.0,
        "device": "cpu",
        "precision": "fp32",
    }


def noop_trial(spec: dict[str, Any]):
    """A trainer that returns at once (what a Ray task of the driver runs)."""
    yield {"event": "started", "host": "bench", "pid": 0, "device": "cpu"}
    yield {"event": "result", "result": fake_result(spec), "stopped_by": []}


def start_ray(temp_dir: str) -> float:
    """A new local Ray instance (2 CPUs, never another user's) with its session folder in
    ``temp_dir`` (short: it holds unix sockets); seconds it took. The benchmark removes the folder."""
    import ray
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers need not find this file
    t0 = time.perf_counter()
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        logging_level=logging.ERROR,
        log_to_driver=False,
        _temp_dir=temp_dir,
    )
    return time.perf_counter() - t0
