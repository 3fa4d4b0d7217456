"""The study an export reads: its space (from the stored text), inputs, configuration, trials
and their artifacts (``optuna.artifacts``), opened once for every folder written."""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..architecture import WEIGHTS_FILE, classifier_keys
from ..errors import UserError
from ..placement import Placement
from ..space import SearchSpace

__all__ = ["ARTIFACT_ID", "StudySource", "artifacts_of", "open_source", "read_artifact", "select_trials"]

#: what an artifact id may look like (anything else is never opened as a path)
ARTIFACT_ID = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass
class StudySource:
    """What every exported trial of a study shares."""

    study: Any
    storage: Any
    name: str
    url: str  # without any password
    space: SearchSpace
    space_toml: str
    space_note: str
    frames: int
    size: int
    num_classes: int
    config: dict[str, Any]
    proxy_input: dict[str, int] | None
    artifact_store: Any
    artifact_dir: str | None


def parse_input(text: Any) -> tuple[int, int] | None:
    """``(frames, size)`` from ``"16x112x112"``."""
    m = re.fullmatch(r"(\d+)x(\d+)x(\d+)", str(text))
    if not m or m.group(2) != m.group(3):
        return None
    return int(m.group(1)), int(m.group(2))


def safe_url(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return re.sub(r"//([^:/@]*):[^@/]*@", r"//\1:***@", url)


def open_source(storage_url: str, study_name: str) -> StudySource:
    from ..study.storage import load_study, open_storage

    storage = open_storage(storage_url, create=False)
    study = load_study(storage, study_name)
    from ..study.records import study_space

    space, toml_text, note = study_space(study)
    ua = study.user_attrs
    cfg = ua.get("config") if isinstance(ua.get("config"), dict) else {}
    target = cfg.get("target") or {}
    fs = parse_input(ua.get("target_input"))
    if fs is None:
        shape = space.input_shape(target.get("frames"), target.get("size"))
        fs = (shape[2], shape[3])
    proxy = parse_input(ua.get("proxy_input"))
    store = None
    artifact_dir = ua.get("artifact_dir")
    if isinstance(artifact_dir, str) and Path(artifact_dir).is_dir():
        from optuna.artifacts import FileSystemArtifactStore

        store = FileSystemArtifactStore(artifact_dir)
    return StudySource(
        study=study,
        storage=storage,
        name=study.study_name,
        url=safe_url(storage_url),
        space=space,
        space_toml=toml_text,
        space_note=note,
        frames=fs[0],
        size=fs[1],
        num_classes=int(target.get("num_classes") or 400),
        config=cfg,
        proxy_input={"frames": proxy[0], "size": proxy[1]} if proxy else None,
        artifact_store=store,
        artifact_dir=artifact_dir if isinstance(artifact_dir, str) else None,
    )


def artifacts_of(info: StudySource, trial: Any) -> dict[str, str]:
    import optuna

    out: dict[str, str] = {}
    for meta in optuna.artifacts.get_all_artifact_meta(trial, storage=info.storage):
        if ARTIFACT_ID.match(meta.artifact_id):
            out[meta.filename] = meta.artifact_id
    return out


def read_artifact(info: StudySource, artifact_id: str, limit: int | None = None) -> bytes | None:
    """An artifact's bytes (``None`` where the store or the file is missing); ``limit`` reads only that many."""
    from optuna.artifacts.exceptions import ArtifactNotFound

    if info.artifact_store is None:
        return None
    try:
        with info.artifact_store.open_reader(artifact_id) as fh:
            return bytes(fh.read() if limit is None else fh.read(limit))
    except (ArtifactNotFound, ValueError, OSError):
        return None


def weights_header(info: StudySource, artifact_id: str) -> tuple[dict[str, tuple[int, ...]], dict[str, str]] | None:
    """Tensor shapes and metadata from a stored safetensors file's header (the tensors are not read)."""
    head = read_artifact(info, artifact_id, 8)
    if head is None:
        return None
    try:
        (n,) = struct.unpack("<Q", head)
        if n > 100_000_000:
            raise ValueError(f"header of {n} bytes")
        data = read_artifact(info, artifact_id, 8 + n)
        if data is None:
            return None
        header = json.loads(data[8:].decode("utf-8"))
        meta = header.pop("__metadata__", None) or {}
        return {k: tuple(v["shape"]) for k, v in header.items()}, dict(meta)
    except (struct.error, ValueError, KeyError, TypeError, AttributeError) as e:
        raise UserError(
            f"{WEIGHTS_FILE} (artifact {artifact_id} in {info.artifact_dir}): not a safetensors file: {e}"
        ) from None


def proxy_classes(
    info: StudySource, plan_space: SearchSpace, placement: Placement, shapes: Mapping[str, Any]
) -> int | None:
    if shapes:
        for key in sorted(classifier_keys(plan_space, placement)):
            if key in shapes and len(shapes[key]) >= 1:
                return int(shapes[key][0])
    recorded = info.study.user_attrs.get("proxy_num_classes")  # written by the driver
    if isinstance(recorded, int) and recorded > 0:
        return recorded
    if (info.config.get("data") or {}).get("source") == "synthetic":
        from ..data.synthetic import CLASSES

        return len(CLASSES)
    return None


def select_trials(info: StudySource, trials: Sequence[int] | None, pareto: bool) -> list[Any]:
    from ..study.storage import pareto_rows

    if pareto == (trials is not None and len(trials) > 0):
        raise UserError("export: give either --pareto or one or more --trial N")
    everything = info.study.get_trials(deepcopy=False)
    by_number = {t.number: t for t in everything}
    if pareto:
        rows = pareto_rows(info.study, everything)  # the same read of the trials as by_number
        if not rows:
            raise UserError(f"--pareto: study {info.name!r} has no completed feasible trial yet")
        return [by_number[r["trial"]] for r in rows]
    out = []
    for n in dict.fromkeys(trials or ()):
        if n not in by_number:
            have = f"its trials are numbered 0 to {max(by_number)}" if by_number else "it has no trials"
            raise UserError(f"--trial {n}: study {info.name!r} has no trial {n} ({have})")
        out.append(by_number[n])
    return out
