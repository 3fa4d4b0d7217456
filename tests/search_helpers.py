"""Small, fast study files for the search tests (tiny space, synthetic clips, a few steps)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

SMALL_STUDY = """
schema_version = 1
name = "{name}"
space = "tiny"
sampler = "{sampler}"
seed = 0
trials = {trials}
evaluate_first = {evaluate_first}

[target]
frames = 16
size = 112
num_classes = 400

[data]
source = "synthetic"
frames = 8
size = 16
eval_clips = 22

[proxy]
steps = 6
batch_size = 8
warmup_steps = 1
eval_every = 3
eval_batch_size = 22
log_every = 3

[early_stopping]
enabled = {early_stopping}

[resources]
cpus = 1
"""


def write_study(
    folder: Path,
    *,
    name: str = "small",
    sampler: str = "tpe",
    trials: int = 4,
    evaluate_first: list[str] | None = None,
    early_stopping: bool = False,
    extra: str = "",
) -> Path:
    """Write a small study file into ``folder`` and return its path. ``extra`` is appended
    (TOML tables such as ``[constraints]``)."""
    text = SMALL_STUDY.format(
        name=name,
        sampler=sampler,
        trials=trials,
        evaluate_first=repr(evaluate_first or []).replace("'", '"'),
        early_stopping="true" if early_stopping else "false",
    )
    path = folder / f"{name}.toml"
    path.write_text(text + extra)
    return path


def sqlite_url(folder: Path, name: str = "study.db") -> str:
    return f"sqlite:///{folder / name}"


def attrs(trial: Any) -> dict[str, Any]:
    """A trial's attributes, flat (its stored ``result`` spread over them)."""
    from placement_search.study.records import trial_attrs

    return trial_attrs(trial)


def init_local_ray() -> None:
    """The tests' shared local Ray instance (2 CPUs, small object store, quiet)."""
    import logging

    import ray

    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        logging_level=logging.ERROR,
        log_to_driver=False,
        object_store_memory=200 * 2**20,
    )
