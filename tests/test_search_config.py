"""Study files: what loads, and the errors for what does not (file, field, value, what is allowed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from search_helpers import write_study

from placement_search.errors import UserError
from placement_search.space import load_space
from placement_search.study.config import (
    DEFAULT_STORAGE,
    check_storage_url,
    load_study_config,
    parse_count,
    resolve_evaluate_first,
)

ROOT = Path(__file__).resolve().parent.parent


def test_shipped_study_files_load(tmp_path):
    files = sorted((ROOT / "studies").glob("*.toml"))
    assert {"quickstart.toml", "inception_minikinetics.toml"} <= {f.name for f in files}
    # real-video studies name list files next to the repository (made with `placement-search subset`):
    # check them in a copy with stand-in lists where the file expects them
    (tmp_path / "studies").mkdir()
    (tmp_path / "data" / "minikinetics").mkdir(parents=True)
    for split in ("train", "val"):
        (tmp_path / "data" / "minikinetics" / f"{split}.txt").write_text("/videos/a.mp4 abseiling\n")
    for f in files:
        copy = tmp_path / "studies" / f.name
        copy.write_text(f.read_text())
        cfg = load_study_config(copy)
        space = load_space(cfg.space)
        resolve_evaluate_first(cfg, space)  # every named placement exists and is searchable


def test_real_scale_example_measures_compute_at_the_kinetics_input(tmp_path):
    (tmp_path / "studies").mkdir()
    (tmp_path / "data" / "minikinetics").mkdir(parents=True)
    for split in ("train", "val"):
        (tmp_path / "data" / "minikinetics" / f"{split}.txt").write_text("/videos/a.mp4 abseiling\n")
    copy = tmp_path / "studies" / "x.toml"
    copy.write_text((ROOT / "studies" / "inception_minikinetics.toml").read_text())
    cfg = load_study_config(copy)
    assert (cfg.target.frames, cfg.target.size, cfg.target.num_classes) == (64, 224, 400)
    assert cfg.data.source == str((tmp_path / "data" / "minikinetics" / "train.txt").resolve())
    assert 0 < cfg.resources.gpus < 1 and cfg.constraints.max_macs == 120_000_000_000
    names = [n for n, _ in resolve_evaluate_first(cfg, load_space("inception"))]
    assert "s3d" in names and "top_heavy_11" in names and "bottom_heavy_11" in names


def test_quickstart_defaults():
    cfg = load_study_config(ROOT / "studies" / "quickstart.toml")
    assert cfg.name == "quickstart" and cfg.space == "tiny"
    assert cfg.objectives == ("accuracy", "macs") and cfg.directions == ["maximize", "minimize"]
    assert cfg.storage == DEFAULT_STORAGE and cfg.storage.startswith("sqlite:///")
    assert cfg.trials >= 20


def test_defaults_of_a_minimal_file(tmp_path):
    p = tmp_path / "m.toml"
    p.write_text('space = "tiny"\n')
    cfg = load_study_config(p)
    assert cfg.name == "m"  # the file's stem
    assert cfg.sampler == "tpe" and cfg.early_stopping.enabled and cfg.resources.cpus == 1.0


@pytest.mark.parametrize(
    "text, expected",
    [
        ('space = "tiny"\ntrails = 3\n', ["trails", "did you mean 'trials'"]),
        ('space = "tiny"\nsampler = "cmaes"\n', ["sampler", "'cmaes'", "nsga2"]),
        ('space = "tiny"\ntrials = 0\n', ["trials", "positive"]),
        ('space = "tiny"\ntrials = "many"\n', ["trials", "integer", "'many'"]),
        ('space = "tiny"\nobjectives = ["macs", "params"]\n', ["objectives", "accuracy"]),
        ('space = "tiny"\nobjectives = ["accuracy", "speed"]\n', ["objectives", "'speed'", "latency_ms"]),
        ('space = "tiny"\n[proxy]\nsteps = -3\n', ["[proxy]", "steps"]),
        ('space = "tiny"\n[proxy]\nsetps = 3\n', ["[proxy]", "'setps'", "steps"]),
        ('space = "tiny"\n[data]\ndifficulty = 2.0\n', ["[data].difficulty", "[0, 1]"]),
        ('space = "tiny"\n[data]\nsource = "/no/such/videos"\n', ["[data].source", "/no/such/videos", "synthetic"]),
        ('space = "tiny"\n[constraints]\nmax_macs = "lots"\n', ["[constraints].max_macs", "'lots'", "20G"]),
        ('space = "tiny"\n[resources]\ngpus = 1.5\n', ["[resources].gpus", "1.5"]),
        ('space = "tiny"\n[early_stopping]\nmargin = 3\n', ["[early_stopping].margin", "[0, 1]"]),
        ('space = "tiny"\nsampler = "families"\n', ["families", "evaluate_first"]),
        (
            'space = "tiny"\nsampler = "nsga2"\nsampler_options = { populaton_size = 4 }\n',
            ["populaton_size", "population_size"],
        ),
        ('space = "tiny"\ntimeout = "soon"\n', ["timeout", "'soon'", "5m"]),
        ('space = "tiny"\nstorage = "mongodb://x"\n', ["storage", "mongodb"]),
        ('space = "tiny"\nname = "../../etc"\n', ["name", "'../../etc'"]),
        ("trials = 3\n", ["space", "missing"]),
        ('space = "tiny"\nschema_version = 9\n', ["schema_version", "9"]),
        ('space = "tiny"\n[data\n', ["not valid TOML"]),
        ('space = "tiny"\n[ray]\nnum_cpus = -1\n', ["[ray].num_cpus", "-1"]),
        ('space = "tiny"\n[proxy]\ndevice = "cuda"\n', ["device = 'cuda'", "[resources] gpus"]),
    ],
)
def test_bad_files_name_the_file_field_and_value(tmp_path, text, expected):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(UserError) as e:
        load_study_config(p)
    msg = str(e.value)
    assert str(p) in msg
    for part in expected:
        assert part in msg, (part, msg)


def test_evaluate_first_names_must_exist_and_be_searchable(tmp_path):
    cfg = load_study_config(write_study(tmp_path, evaluate_first=["all_2d", "bottom_heavy_*"]))
    names = [n for n, _ in resolve_evaluate_first(cfg, load_space("tiny"))]
    assert names[0] == "all_2d" and "bottom_heavy_3" in names
    bad = load_study_config(write_study(tmp_path, name="b", evaluate_first=["no_such_model"]))
    with pytest.raises(UserError, match=r"no_such_model.*matches no named placement"):
        resolve_evaluate_first(bad, load_space("tiny"))
    p = tmp_path / "ref.toml"
    p.write_text('space = "inception"\nevaluate_first = ["i3d"]\n')  # DeepMind I3D needs other backbone args
    with pytest.raises(UserError, match="reference model outside the searchable space"):
        resolve_evaluate_first(load_study_config(p), load_space("inception"))


def test_counts_and_storage_urls():
    assert parse_count("20G", "x") == 20_000_000_000
    assert parse_count("1.5e9", "x") == 1_500_000_000
    assert parse_count(750_000, "x") == 750_000
    with pytest.raises(UserError):
        parse_count(-1, "x")
    assert check_storage_url("runs/s.db") == "sqlite:///runs/s.db"
    assert check_storage_url("postgresql+psycopg2://u@127.0.0.1/db").startswith("postgresql")
    with pytest.raises(UserError, match="not a storage URL"):
        check_storage_url("runs/study")


def test_cli_run_with_a_bad_file_exits_2_without_traceback(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text('space = "tiny"\n[proxy]\nsteps = "ten"\n')
    r = subprocess.run(
        [sys.executable, "-m", "placement_search", "run", str(p)], capture_output=True, text=True, cwd=tmp_path
    )
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert str(p) in r.stderr and "[proxy].steps" in r.stderr and "'ten'" in r.stderr
    assert not (tmp_path / "placement-search.db").exists()  # nothing created for a bad file


def test_a_relative_sqlite_storage_is_next_to_the_study_file(tmp_path):
    (tmp_path / "studies").mkdir()
    p = tmp_path / "studies" / "s.toml"
    p.write_text('space = "tiny"\nstorage = "sqlite:///runs/s.db"\n')
    cfg = load_study_config(p)
    assert cfg.storage == f"sqlite:///{(tmp_path / 'studies' / 'runs' / 's.db').resolve()}"
    p.write_text('space = "tiny"\nstorage = "sqlite:////abs/s.db"\n')
    assert load_study_config(p).storage == "sqlite:////abs/s.db"
