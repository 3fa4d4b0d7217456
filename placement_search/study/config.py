"""Study configuration: ``studies/*.toml``, validated on load into the typed settings of
:mod:`.settings` (re-exported here).

Every mistake is a :class:`~placement_search.errors.UserError` that names the file, the
field, the bad value and what is allowed. See ``docs/studies.md`` for the whole format;
``studies/quickstart.toml`` is the smallest complete example.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import itertools
import json
import math
import re
import sys
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..data.config import DataConfig
from ..errors import UserError
from ..fields import coerce, from_table, unknown_field
from ..train import ProxyBudget
from .samplers import SAMPLERS
from .settings import (
    DEFAULT_STORAGE,
    JOURNAL_SCHEME,
    LATENCY_MEASURES,
    OBJECTIVES,
    SCHEMA_VERSION,
    ArtifactsConfig,
    Constraints,
    EarlyStopping,
    Fidelity,
    LatencyConfig,
    RayConfig,
    Resources,
    StudyConfig,
    TableBudget,
    TableConfig,
    TargetInput,
    check_storage_url,
    count_value,
    journal_path,
    parse_count,
    storage_relative_to,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "DEFAULT_STORAGE",
    "JOURNAL_SCHEME",
    "LATENCY_MEASURES",
    "OBJECTIVES",
    "SAMPLERS",
    "SCHEMA_VERSION",
    "ArtifactsConfig",
    "Constraints",
    "DataConfig",
    "EarlyStopping",
    "Fidelity",
    "LatencyConfig",
    "RayConfig",
    "Resources",
    "StudyConfig",
    "TableBudget",
    "TableConfig",
    "TargetInput",
    "check_storage_url",
    "check_study_name",
    "config_json",
    "count_value",
    "journal_path",
    "load_study_config",
    "parse_count",
    "resolve_evaluate_first",
    "stored_study_config",
    "study_config_from_dict",
]


# -- loading ---------------------------------------------------------------------------------

_TOP = {
    "schema_version",
    "name",
    "space",
    "description",
    "storage",
    "sampler",
    "sampler_options",
    "seed",
    "trials",
    "timeout",
    "objectives",
    "evaluate_first",
    "target",
    "data",
    "proxy",
    "constraints",
    "early_stopping",
    "ray",
    "resources",
    "latency",
    "artifacts",
    "table",
    "repeats",
    "fidelity",
}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def check_study_name(name: Any, where: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise UserError(
            f"{where}: study name {name!r} must be 1-128 letters, digits, '_', '-' or '.', starting with a letter or digit"
        )
    return name


def _duration(value: Any, where: str) -> float:
    """Seconds from ``300``, ``"300s"``, ``"5m"``, ``"2h"``."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (m := re.fullmatch(r"\s*([0-9.]+)\s*([smhd]?)\s*", value)):
        try:
            seconds = float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
        except ValueError:
            seconds = -1
    else:
        seconds = -1
    if not (math.isfinite(seconds) and seconds > 0):
        raise UserError(f'{where}: expected a positive duration such as 300, "5m" or "2h", got {value!r}')
    return seconds


def load_study_config(path: str | Path) -> StudyConfig:
    """Read and validate a study file."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: no such study file" + (" (it is a folder)" if p.is_dir() else ""))
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{p}: cannot read: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{p}: not valid TOML: {e}") from None
    return study_config_from_dict(data, p)


def study_config_from_dict(data: Mapping[str, Any], path: Path | None = None) -> StudyConfig:
    """A study file's table (``path``: where it came from, for messages and relative paths)."""
    f = str(path) if path else "study"
    base = path.resolve().parent if path else Path.cwd()
    version = data.get("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise UserError(f"{f}: schema_version: this placement-search reads version {SCHEMA_VERSION}, got {version!r}")
    for key in data:
        if key not in _TOP:
            raise unknown_field(key, sorted(_TOP), f)
    kw: dict[str, Any] = {"path": path.resolve() if path else None}
    kw.update(_top_level(data, f, path, base))
    kw.update(_tables(data, f, base))
    if "repeats" in data:
        repeats = coerce(data["repeats"], int, f"{f}: repeats")
        if not 1 <= repeats <= 100:
            raise UserError(f"{f}: repeats: expected trainer seeds per placement in [1, 100], got {repeats}")
        kw["repeats"] = repeats
    if "fidelity" in data:
        proxy_table = data.get("proxy", {})
        kw["fidelity"] = _fidelity(data["fidelity"], f"{f}: [fidelity]", kw["proxy"], proxy_table, kw.get("repeats", 1))
        kw["proxy"] = dataclasses.replace(kw["proxy"], steps=kw["fidelity"].steps[0])
    if "table" in data:
        kw["table"] = _table_config(data["table"], f"{f}: [table]", kw["proxy"], kw["data"], base)
    cfg = StudyConfig(**kw)
    if cfg.proxy.device.startswith("cuda") and not cfg.resources.gpus:
        raise UserError(
            f"{f}: [proxy] device = {cfg.proxy.device!r} but [resources] gpus = 0: Ray gives a trial no GPU "
            'unless it asks for one; set [resources] gpus (e.g. 0.25 to share a GPU) or device = "auto"'
        )
    if cfg.sampler == "families" and not cfg.evaluate_first:
        raise UserError(f"{f}: sampler 'families' evaluates exactly the placements of evaluate_first, which is empty")
    _check_sampler_options(cfg, f)
    return cfg


def _top_level(data: Mapping[str, Any], f: str, path: Path | None, base: Path) -> dict[str, Any]:
    """The study file's top-level keys: name, space, storage, sampler, budget, objectives."""
    kw: dict[str, Any] = {"name": check_study_name(data.get("name", path.stem if path else None), f"{f}: name")}
    if "space" not in data:
        raise UserError(f"{f}: space: missing; name a shipped space (e.g. 'tiny', 'inception') or a .toml path")
    space = coerce(data["space"], str, f"{f}: space")
    if space.endswith(".toml") and not Path(space).is_absolute():
        space = str((base / space).resolve())
    kw["space"] = space
    if "description" in data:
        kw["description"] = coerce(data["description"], str, f"{f}: description")
    if "storage" in data:
        url = check_storage_url(coerce(data["storage"], str, f"{f}: storage"), f"{f}: storage")
        kw["storage"] = storage_relative_to(url, base)
    sampler = data.get("sampler", "tpe")
    if sampler not in SAMPLERS:
        raise UserError(f"{f}: sampler: expected one of {', '.join(SAMPLERS)}, got {sampler!r}")
    kw["sampler"] = sampler
    opts = data.get("sampler_options", {})
    if not isinstance(opts, Mapping):
        raise UserError(f"{f}: sampler_options: expected a table, got {opts!r}")
    kw["sampler_options"] = dict(opts)
    seed = coerce(data.get("seed", 0), int, f"{f}: seed")
    if not 0 <= seed < 2**32:
        raise UserError(f"{f}: seed: expected an integer in [0, 2^32), got {seed}")
    kw["seed"] = seed
    if "trials" in data:
        trials = coerce(data["trials"], int, f"{f}: trials")
        if trials < 1:
            raise UserError(f"{f}: trials: expected a positive integer, got {trials}")
        kw["trials"] = trials
    if "timeout" in data:
        kw["timeout"] = _duration(data["timeout"], f"{f}: timeout")
    kw["objectives"] = _objectives(data.get("objectives", ["accuracy", "macs"]), f)
    first = data.get("evaluate_first", [])
    if not isinstance(first, list) or not all(isinstance(n, str) for n in first):
        raise UserError(f"{f}: evaluate_first: expected a list of named placements, got {first!r}")
    kw["evaluate_first"] = tuple(first)
    return kw


def _objectives(objectives: Any, f: str) -> tuple[str, ...]:
    if not isinstance(objectives, list) or not all(isinstance(o, str) for o in objectives):
        raise UserError(f"{f}: objectives: expected a list of names, got {objectives!r}")
    for o in objectives:
        if o not in OBJECTIVES:
            raise UserError(f"{f}: objectives: unknown objective {o!r}; allowed: {', '.join(OBJECTIVES)}")
    if len(set(objectives)) != len(objectives) or "accuracy" not in objectives or len(objectives) < 2:
        raise UserError(
            f"{f}: objectives: expected 'accuracy' and at least one cost ({', '.join(list(OBJECTIVES)[1:])}), "
            f"each once, got {objectives!r}"
        )
    return tuple(objectives)


def _tables(data: Mapping[str, Any], f: str, base: Path) -> dict[str, Any]:
    """The study file's tables: [target], [data], [proxy], [constraints], ..., [artifacts]."""
    kw: dict[str, Any] = {"target": from_table(TargetInput, data.get("target", {}), f"{f}: [target]")}
    data_cfg = from_table(DataConfig, data.get("data", {}), f"{f}: [data]", check=False).resolved(base)
    data_cfg.check(f"{f}: [data]")
    kw["data"] = data_cfg
    proxy_table = data.get("proxy", {})
    if isinstance(proxy_table, Mapping) and "evaluator" in proxy_table:
        proxy_table = dict(proxy_table)
        kw["evaluator"] = _evaluator(proxy_table.pop("evaluator"), f"{f}: [proxy] evaluator", base)
    kw["proxy"] = from_table(ProxyBudget, proxy_table, f"{f}: [proxy]", skip=("threads",))
    kw["constraints"] = from_table(
        Constraints,
        data.get("constraints", {}),
        f"{f}: [constraints]",
        special={"max_macs": parse_count, "max_params": parse_count, "max_latency_ms": _positive_float},
    )
    kw["early_stopping"] = from_table(EarlyStopping, data.get("early_stopping", {}), f"{f}: [early_stopping]")
    kw["ray"] = from_table(RayConfig, data.get("ray", {}), f"{f}: [ray]", special={"object_store_memory": parse_count})
    kw["resources"] = from_table(Resources, data.get("resources", {}), f"{f}: [resources]")
    kw["latency"] = from_table(LatencyConfig, data.get("latency", {}), f"{f}: [latency]")
    art = from_table(ArtifactsConfig, data.get("artifacts", {}), f"{f}: [artifacts]")
    if art.path is not None and not Path(art.path).expanduser().is_absolute():
        art = dataclasses.replace(art, path=str((base / Path(art.path).expanduser()).resolve()))
    kw["artifacts"] = art
    return kw


def _fraction(value: Any, where: str) -> float:
    """``0.33``, ``"1/3"``: a share in (0, 1]."""
    v: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        v = float(value)
    elif isinstance(value, str) and (m := re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", value)) and int(m.group(2)):
        v = int(m.group(1)) / int(m.group(2))
    if v is None or not 0.0 < v <= 1.0:
        raise UserError(f'{where}: expected a share in (0, 1] such as 0.33 or "1/3", got {value!r}')
    return v


def _fidelity(table: Any, where: str, proxy: ProxyBudget, proxy_table: Any, repeats: int) -> Fidelity:
    if not isinstance(table, Mapping):
        raise UserError(f"{where}: expected a table, got {table!r}")
    allowed = ["steps", "promote", "seeds_at_top", "margin"]
    for key in table:
        if key not in allowed:
            raise unknown_field(key, allowed, where)
    steps = table.get("steps")
    if (
        not isinstance(steps, list)
        or not steps
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in steps)
        or any(a >= b for a, b in itertools.pairwise(steps))
    ):
        raise UserError(f"{where}.steps: expected ascending positive step counts such as [80, 240, 720], got {steps!r}")
    if steps[0] <= proxy.warmup_steps:
        raise UserError(
            f"{where}.steps: the lowest rung ({steps[0]} steps) must be longer than [proxy] warmup_steps ({proxy.warmup_steps})"
        )
    if isinstance(proxy_table, Mapping) and "steps" in proxy_table and proxy_table["steps"] != steps[0]:
        raise UserError(
            f"{where}.steps: the lowest rung is the proxy budget, but [proxy] steps = {proxy_table['steps']!r} "
            f"and [fidelity] steps start at {steps[0]}: leave [proxy] steps out"
        )
    promote = _fraction(table.get("promote", "1/3"), f"{where}.promote")
    seeds = coerce(table.get("seeds_at_top", repeats), int, f"{where}.seeds_at_top")
    if not 1 <= seeds <= 100:
        raise UserError(f"{where}.seeds_at_top: expected trainer seeds in [1, 100], got {seeds}")
    margin_v = table.get("margin", 0.0)
    margin: float | None
    if margin_v == "auto":
        margin = None
    elif isinstance(margin_v, int | float) and not isinstance(margin_v, bool) and 0.0 <= margin_v < 1.0:
        margin = float(margin_v)
    else:
        raise UserError(f'{where}.margin: expected an accuracy margin in [0, 1) or "auto", got {margin_v!r}')
    return Fidelity(tuple(steps), promote, seeds, margin)


def _evaluator(value: Any, where: str, base: Path) -> str:
    """``"table:PATH"`` (a ground-truth table CSV, relative to the study file) or ``"train"``."""
    text = coerce(value, str, where)
    if text == "train":
        return text
    if not text.startswith("table:") or not text[len("table:") :].strip():
        raise UserError(
            f'{where}: expected "train" or "table:PATH" (a table CSV from `placement-search table export`), got {text!r}'
        )
    path = Path(text[len("table:") :].strip()).expanduser()
    if not path.is_absolute():
        path = (base / path).resolve()
    if not path.is_file():
        raise UserError(f"{where}: no such table file {path}")
    return f"table:{path}"


def _seeds(value: Any, where: str, first: int) -> tuple[int, ...]:
    """``3`` (seeds first, first+1, first+2) or an explicit list of distinct seeds."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise UserError(f"{where}: expected a positive number of seeds or a list of seeds, got {value}")
        return tuple(first + i for i in range(value))
    if isinstance(value, list) and value and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        if len(set(value)) != len(value) or any(not 0 <= v < 2**63 for v in value):
            raise UserError(f"{where}: expected distinct seeds in [0, 2^63), got {value}")
        return tuple(value)
    raise UserError(f"{where}: expected a positive number of seeds or a list of seeds, got {value!r}")


def _table_config(table: Any, where: str, proxy: ProxyBudget, data: DataConfig, base: Path) -> TableConfig:
    """``[table]``: ``choices``, ``seeds`` (the proxy budget's), and one sub-table per further
    budget: ``[table.reference]`` (the budget the analyses judge by) and any named candidate
    proxy, e.g. ``[table.proxy200]``: overrides of ``[proxy]`` and ``[data]`` with its ``seeds``."""
    if not isinstance(table, Mapping):
        raise UserError(f"{where}: expected a table of fields, got {table!r}")
    for key, value in table.items():
        if key not in ("choices", "seeds") and not isinstance(value, Mapping):
            raise unknown_field(key, ["choices", "seeds", "reference", "<a budget's name> (a sub-table)"], where)
    choices = None
    if "choices" in table:
        c = table["choices"]
        if not isinstance(c, list) or not c or not all(isinstance(x, str) for x in c):
            raise UserError(f'{where}.choices: expected a list of op kinds such as ["2d", "3d", "sep"], got {c!r}')
        choices = tuple(c)
    budgets = [TableBudget("proxy", _seeds(table.get("seeds", 3), f"{where}.seeds", proxy.seed), proxy, data)]
    names = [k for k in table if k not in ("choices", "seeds")]
    # cheapest first: candidates in the file's order, the reference (the longest runs) last
    for name in sorted(names, key=lambda k: k == "reference"):
        w = f"{where}.{name}"
        if name == "proxy" or not _BUDGET_NAME.fullmatch(name):
            raise UserError(
                f"{w}: a budget's name is lower-case letters, digits and '_', starting with a letter, and not "
                f"'proxy' (the study's [proxy] is that budget), got {name!r}"
            )
        budgets.append(_table_budget(name, table[name], w, proxy, data))
    return TableConfig(choices=choices, budgets=tuple(budgets))


_BUDGET_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")


def _table_budget(name: str, ref: Mapping[str, Any], w: str, proxy: ProxyBudget, data: DataConfig) -> TableBudget:
    """A budget of a table from its sub-table: overrides of [proxy] and [data] and its seeds."""
    proxy_fields = [x.name for x in dataclasses.fields(ProxyBudget) if x.name not in ("threads",)]
    data_fields = ["frames", "size", "eval_clips"]
    overrides_p: dict[str, Any] = {}
    overrides_d: dict[str, Any] = {}
    hints = typing.get_type_hints(ProxyBudget)
    for key, value in ref.items():
        if key == "seeds":
            continue
        if key in data_fields:
            overrides_d[key] = coerce(value, int, f"{w}.{key}")
        elif key in proxy_fields:
            overrides_p[key] = coerce(value, hints[key], f"{w}.{key}")
        else:
            raise unknown_field(key, ["seeds", *proxy_fields, *data_fields], w)
    try:
        rproxy = dataclasses.replace(proxy, **overrides_p)
    except UserError as e:
        raise UserError(f"{w}: {e}") from None
    rdata = dataclasses.replace(data, **overrides_d)
    rdata.check(w)
    return TableBudget(name, _seeds(ref.get("seeds", 1), f"{w}.seeds", rproxy.seed), rproxy, rdata)


def _positive_float(value: Any, where: str) -> float:
    v = coerce(value, float, where)
    if v <= 0:
        raise UserError(f"{where}: expected a positive number, got {value!r}")
    return v


def _check_sampler_options(cfg: StudyConfig, f: str) -> None:
    allowed = SAMPLERS[cfg.sampler].options
    for key, value in cfg.sampler_options.items():
        where = f"{f}: sampler_options.{key}"
        if key not in allowed:
            if not allowed:
                raise UserError(f"{where}: sampler {cfg.sampler!r} takes no options")
            raise unknown_field(key, sorted(allowed), f"{f}: sampler_options (sampler {cfg.sampler!r})")
        v = coerce(value, allowed[key], where)
        if allowed[key] is int and v < 1:
            raise UserError(f"{where}: expected a positive integer, got {v}")
        if allowed[key] is float and not 0.0 <= v <= 1.0:
            raise UserError(f"{where}: expected a probability in [0, 1], got {v}")
    if cfg.sampler in ("nsga2", "nsga3") and cfg.sampler_options.get("population_size", 50) < 2:
        raise UserError(f"{f}: sampler_options.population_size: expected at least 2")


def resolve_evaluate_first(cfg: StudyConfig, space: Any) -> list[tuple[str, Any]]:
    """``evaluate_first`` names (globs allowed, e.g. ``bottom_heavy_*``) -> [(name, placement)],
    in the order given; placements outside the searchable space are an error."""
    where = f"{cfg.path or 'study'}: evaluate_first"
    out: list[tuple[str, Any]] = []
    for pattern in cfg.evaluate_first:
        names = [n for n in space.named if fnmatch.fnmatchcase(n, pattern)]
        if not names:
            raise UserError(
                f"{where}: {pattern!r} matches no named placement of space {space.name!r}; "
                f"named placements: {', '.join(space.named)}"
            )
        for n in names:
            npl = space.named[n]
            if not npl.in_space:
                raise UserError(
                    f"{where}: {n!r} is a reference model outside the searchable space {space.name!r} "
                    "(it needs other backbone arguments); list placements the search can pick"
                )
            if n not in [x for x, _ in out]:
                out.append((n, npl.placement))
    return out


def stored_study_config(stored: Mapping[str, Any], where: str) -> StudyConfig:
    """The configuration a study stored when it was created (its ``config`` user attribute,
    :meth:`StudyConfig.to_dict`), read back: what ``promote`` runs a finished study with."""
    if not isinstance(stored, Mapping) or "space" not in stored:
        raise UserError(f"{where}: the study stores no configuration (was it created by placement-search run?)")

    def clean(d: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in d.items() if v is not None}

    d = clean(stored)
    d.pop("path", None)
    d.pop("table", None)
    d["schema_version"] = SCHEMA_VERSION
    proxy = clean(d.get("proxy", {}))
    proxy.pop("threads", None)
    if "evaluator" in d:
        proxy["evaluator"] = d.pop("evaluator")
    fid = d.get("fidelity")
    if isinstance(fid, Mapping):
        d["fidelity"] = {
            **clean(fid),
            "steps": list(fid["steps"]),
            "margin": "auto" if fid.get("margin") is None else fid["margin"],
        }
    d["proxy"] = proxy
    for section in ("target", "data", "constraints", "early_stopping", "ray", "resources", "latency", "artifacts"):
        if isinstance(d.get(section), Mapping):
            d[section] = clean(d[section])
    try:
        return study_config_from_dict(d, None)
    except UserError as e:
        raise UserError(f"{where}: its stored configuration does not load here: {e}") from None


def config_json(cfg: StudyConfig) -> str:
    return json.dumps(cfg.to_dict(), sort_keys=True)
