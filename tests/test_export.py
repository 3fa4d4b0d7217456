"""``placement-search export`` and ``load_architecture`` on a real small study.

The study trains the tiny space for 6 steps on 8x16x16 synthetic clips (under a second a
trial) and keeps the weights of its Pareto-optimal trials; its Pareto front is exported once
(json, TorchScript, ONNX, weights) for the whole module.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import torch
from optuna.trial import create_trial
from search_helpers import sqlite_url, write_study

from placement_search.architecture import ARCH_FILE, load_architecture, read_architecture
from placement_search.cost import count_macs
from placement_search.errors import UserError
from placement_search.inspect.export import FORMATS, export_study
from placement_search.study import SearchDriver, load_study_config
from placement_search.study.records import trial_attrs
from placement_search.study.storage import pareto_rows

ALL_FILES = {
    "arch.json",
    "MODEL_CARD.md",
    "costs.csv",
    "curve.csv",
    "weights.safetensors",
    "model.torchscript.pt",
    "model.onnx",
}


def _copy_trial(trial, **user_attrs):
    ua = {k: v for k, v in trial_attrs(trial).items() if k not in ("named", "weights_kept", "values")}
    ua.update(user_attrs)
    return create_trial(params=trial.params, distributions=trial.distributions, values=trial.values, user_attrs=ua)


@pytest.fixture(scope="module")
def study(tmp_path_factory, ray_local):
    folder = tmp_path_factory.mktemp("export")
    url = sqlite_url(folder)
    cfg = load_study_config(write_study(folder, trials=2, evaluate_first=["all_2d", "all_sep"]))
    SearchDriver(cfg, storage=url).run()
    s = optuna.load_study(study_name="small", storage=url)
    first, second = s.trials[0], s.trials[1]
    # trial 2: a later proposal of trial 0's placement, recorded as the driver records reuse
    s.add_trial(_copy_trial(first, status="reused", reused_from=0, reused_status="ok"))
    # trial 3: a trained trial whose weights were not kept (as with keep_weights = "none")
    s.add_trial(_copy_trial(second))
    return SimpleNamespace(url=url, folder=folder, study=s, reused=2, no_weights=3)


@pytest.fixture(scope="module")
def exported(study):
    out = study.folder / "out"
    results = export_study(study.url, "small", out, pareto=True, formats=FORMATS, weights=True)
    return SimpleNamespace(out=out, results=results, folders={r.trial: r.folder for r in results})


@pytest.fixture
def cli_main():
    """``placement-search``'s ``main``."""
    from placement_search.cli import main

    return main


def test_pareto_export_writes_one_self_contained_folder_per_front_trial(study, exported):
    rows = pareto_rows(study.study)
    assert [r.trial for r in exported.results] == [r["trial"] for r in rows]
    assert study.reused not in exported.folders and 0 in exported.folders  # all_2d, the cheapest, is on the front
    assert sorted(p.name for p in exported.out.iterdir()) == [f"trial-{r['trial']:04d}" for r in rows]
    for r in exported.results:
        folder = exported.out / f"trial-{r.trial:04d}"
        assert folder == r.folder and {p.name for p in folder.iterdir()} == ALL_FILES == set(r.files)
        assert all(p.resolve().is_relative_to(exported.out.resolve()) for p in folder.rglob("*"))
        ua = trial_attrs(study.study.trials[r.trial])
        arch = json.loads((folder / ARCH_FILE).read_text())
        assert arch["schema_version"] == 1 and arch["format"] == "placement-search architecture"
        assert arch["space"]["name"] == "tiny" and arch["space"]["toml"] == study.study.user_attrs["space_toml"]
        assert arch["backbone"]["name"] == "tiny" and arch["backbone"]["args"]["widths"] == [16, 32, 64, 128]
        assert arch["placement"] == ua["placement"] and arch["placement_string"] == ua["placement_string"]
        assert arch["num_classes"] == 400
        assert arch["input"] == {"channels": 3, "frames": 16, "size": 112, "layout": "NCTHW"}
        assert (arch["cost"]["params"], arch["cost"]["macs"], arch["cost"]["flops"]) == (
            ua["params"],
            ua["macs"],
            ua["flops"],
        )
        assert "FLOPs = 2 x MACs" in arch["cost"]["convention"]
        proxy = arch["proxy"]
        assert proxy["accuracy"] == ua["accuracy"] and proxy["num_classes"] == 11 and proxy["status"] == "ok"
        assert proxy["budget"]["steps"] == 6 and proxy["data"]["source"] == "synthetic"
        assert proxy["input"] == {"frames": 8, "size": 16}
        prov = arch["provenance"]
        assert prov["study"] == "small" and prov["trial"] == r.trial and prov["reused_from"] is None
        assert prov["storage"] == study.url and prov["package_version"] and prov["exported_at"]
        assert [o["name"] for o in prov["objectives"]] == ["accuracy", "macs"]
        for name, meta in arch["files"].items():
            data = (folder / name).read_bytes()
            assert meta["bytes"] == len(data) and meta["sha256"] == hashlib.sha256(data).hexdigest()
        onnx_meta = arch["files"]["model.onnx"]
        assert onnx_meta["dynamic_batch"] and onnx_meta["num_classes"] == 11
        assert onnx_meta["weights"] == "weights.safetensors" and onnx_meta["max_abs_diff"] <= 1e-4
        assert onnx_meta["input"] == [1, 3, 16, 112, 112]
        card = (folder / "MODEL_CARD.md").read_text()
        for text in (ua["placement_string"], "MACs", "FLOPs", "load_architecture", "not the accuracy", "trial"):
            assert text in card
        assert {"eager", "torchscript", "onnx", "total"} <= set(r.seconds)


def test_load_architecture_rebuilds_the_recorded_params_and_macs(study, exported):
    for trial, folder in exported.folders.items():
        ua = trial_attrs(study.study.trials[trial])
        for path in (folder, folder / ARCH_FILE):
            model = load_architecture(path)
            assert isinstance(model, torch.nn.Module) and not model.training
            params, macs, out = count_macs(model, (1, 3, 16, 112, 112))  # a real forward pass
            assert (params, macs, out) == (ua["params"], ua["macs"], (1, 400))
        arch = read_architecture(folder)
        assert arch.cost().macs == ua["macs"] and arch.input_shape == (1, 3, 16, 112, 112)
        with torch.no_grad():
            assert load_architecture(folder, num_classes=7)(torch.zeros(2, 3, 8, 32, 32)).shape == (2, 7)


def test_weights_load_only_from_safetensors_and_the_classifier_follows_num_classes(exported):
    from safetensors.torch import load_file

    folder = exported.folders[0]
    saved = load_file(str(folder / "weights.safetensors"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the proxy's 11 classes: everything loads, no warning
        model = load_architecture(folder, num_classes=11, weights=True)
    state = model.state_dict()
    assert state.keys() == saved.keys() and all(torch.equal(state[k], saved[k]) for k in saved)

    with pytest.warns(UserWarning, match=r"11 classes .*fc\.weight, fc\.bias left freshly initialised"):
        model = load_architecture(folder, weights=True)  # the target's 400 classes
    state = model.state_dict()
    assert state["fc.weight"].shape == (400, 128)
    assert all(torch.equal(state[k], saved[k]) for k in saved if not k.startswith("fc."))


def test_onnx_and_torchscript_outputs_match_the_loaded_model(exported):
    import onnxruntime

    folder = exported.folders[0]
    model = load_architecture(folder, num_classes=11, weights=True)
    x = torch.randn(3, 3, 16, 112, 112, generator=torch.Generator().manual_seed(1))  # another batch size
    with torch.no_grad():
        ref = model(x)
    session = onnxruntime.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    (out,) = session.run(["logits"], {"clip": x.numpy()})
    assert out.shape == (3, 11)
    torch.testing.assert_close(torch.from_numpy(out), ref, atol=1e-4, rtol=1e-4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated in recent torch
        traced = torch.jit.load(str(folder / "model.torchscript.pt"))
        with torch.no_grad():
            torch.testing.assert_close(traced(x), ref, atol=1e-4, rtol=1e-4)


def test_a_reused_trial_exports_the_weights_of_the_trial_that_was_trained(study, exported, tmp_path):
    (r,) = export_study(study.url, "small", tmp_path, trials=[study.reused], weights=True)
    assert r.folder == tmp_path / "trial-0002" and set(r.files) == {
        "arch.json",
        "MODEL_CARD.md",
        "costs.csv",
        "curve.csv",
        "weights.safetensors",
    }
    assert (r.folder / "weights.safetensors").read_bytes() == (exported.folders[0] / "weights.safetensors").read_bytes()
    arch = json.loads((r.folder / ARCH_FILE).read_text())
    assert arch["provenance"]["trial"] == 2 and arch["provenance"]["reused_from"] == 0
    assert "reuses trial 0" in (r.folder / "MODEL_CARD.md").read_text()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_architecture(r.folder, num_classes=11, weights=True)


def test_cli_exports_and_refuses_to_overwrite_unless_asked(study, cli_main, tmp_path, capsys):
    base = ["export", "--storage", study.url, "--study", "small", "-o", str(tmp_path)]
    assert cli_main([*base, "--trial", "1", "--trial", str(study.no_weights), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["trial"] for r in rows] == [1, 3] and [Path(r["folder"]).name for r in rows] == [
        "trial-0001",
        "trial-0003",
    ]
    assert set(rows[0]["files"]) == {"arch.json", "MODEL_CARD.md", "costs.csv", "curve.csv"}
    with pytest.raises(UserError, match=r"no weights\.safetensors"):
        load_architecture(tmp_path / "trial-0001", weights=True)

    assert cli_main([*base, "--trial", "1"]) == 2
    err = capsys.readouterr().err
    assert "trial-0001 exists and is not empty; pass --overwrite" in err and "Traceback" not in err
    (tmp_path / "trial-0001" / "note.txt").write_text("mine")
    assert cli_main([*base, "--trial", "1", "--overwrite"]) == 0
    out = capsys.readouterr().out
    assert "trial 1 (all_sep): sep sep sep sep sep" in out and "exported 1 architecture of study 'small'" in out
    assert not (tmp_path / "trial-0001" / "note.txt").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left behind


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--trial", "99"], "--trial 99: study 'small' has no trial 99 (its trials are numbered 0 to 3)"),
        (["--trial", "3", "--weights"], "kept no proxy weights (status ok; the study's [artifacts] keep_weights"),
        (["--trial", "0", "--study", "nope"], "--study: no study 'nope' in this storage"),
    ],
)
def test_cli_user_errors_print_one_line_and_exit_2(study, cli_main, tmp_path, capsys, extra, message):
    argv = ["export", "--storage", study.url, "--study", "small", "-o", str(tmp_path / "out"), *extra]
    assert cli_main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("placement-search: error: ") and message in lines[0]
    assert "Traceback" not in captured.err and captured.out == ""
    assert not list((tmp_path / "out").glob("trial-*"))
    if "--weights" in extra:
        assert 'keep_weights = "all"' in lines[0]


@pytest.mark.parametrize(
    "argv",
    [
        ["--pareto", "--trial", "1"],
        ["--format", "json,tflite", "--pareto"],
        ["--trial", "-1"],
        ["--clip", "16x112x96", "--pareto"],
        [],
    ],
)
def test_cli_bad_arguments_exit_2(study, cli_main, tmp_path, capsys, argv):
    with pytest.raises(SystemExit) as e:
        cli_main(["export", "--storage", study.url, "--study", "small", "-o", str(tmp_path), *argv])
    assert e.value.code == 2 and "Traceback" not in capsys.readouterr().err


def test_an_export_folder_never_escapes_the_output_folder(study, tmp_path):
    out, outside = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    outside.mkdir()
    (out / "trial-0001").symlink_to(outside, target_is_directory=True)
    with pytest.raises(UserError, match="outside the output folder"):
        export_study(study.url, "small", out, trials=[1], overwrite=True)
    assert not list(outside.iterdir())
    (out / "trial-0001").unlink()
    (r,) = export_study(study.url, "small", out, trials=[1])
    assert r.folder.resolve().parent == out.resolve()


def test_an_export_against_a_changed_space_is_refused(study, tmp_path):
    src = study.study
    edited = optuna.create_study(storage=study.url, study_name="edited", directions=src.directions)
    for k, v in src.user_attrs.items():
        edited.set_user_attr(k, v.replace("[16, 32, 64, 128]", "[16, 32, 64, 256]") if k == "space_toml" else v)
    edited.add_trial(_copy_trial(src.trials[0]))
    with pytest.raises(UserError, match=r"trial 0 recorded 792430592 MACs .* the space or the backbone code changed"):
        export_study(study.url, "edited", tmp_path, trials=[0])
    assert not list(tmp_path.iterdir())


def test_onnx_without_its_packages_is_a_clear_error(study, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(UserError, match=r"needs onnxruntime: pip install 'placement-search\[export\]'"):
        export_study(study.url, "small", tmp_path, trials=[1], formats="json,onnx")


def _edit(data):
    data["placement"]["positions"]["layer1.0.conv1"] = {"op": "3d", "kt": 3}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: d.update(schema_version=2),
            "schema_version: expected 1, got 2 (written by a newer placement-search",
        ),
        (lambda d: d.pop("schema_version"), "missing field 'schema_version'"),
        (lambda d: d.pop("placement"), "missing field 'placement' (expected an object)"),
        (lambda d: d["space"].pop("toml"), "missing field 'space.toml'"),
        (lambda d: d.update(num_classes="400"), "num_classes: expected an integer, got '400'"),
        (lambda d: d["input"].pop("frames"), "missing field 'input.frames'"),
        (
            lambda d: d["placement"]["positions"].update({"layer9.0.conv1": {"op": "3d", "kt": 3}}),
            "placement: unknown position 'layer9.0.conv1'; positions of 'tiny' are stem, layer1.0.conv1",
        ),
        (lambda d: d["placement"]["positions"].pop("stem"), "placement: no choice for position(s) stem"),
        (_edit, "positions 'layer1.0.conv1' and 'layer1.0.conv2' are tied in group 'layer1.0'"),
        (
            lambda d: d["placement"]["positions"].update(stem={"op": "4d"}),
            "placement.positions['stem'].op: unknown op kind '4d'",
        ),
        (lambda d: d["space"].update(toml="name = "), "space.toml: not valid TOML"),
        (lambda d: d["backbone"]["args"].update(widths=[8, 8, 8, 8]), "backbone: 'tiny' with args"),
    ],
)
def test_bad_arch_json_files_get_errors_naming_the_file_and_the_field(exported, tmp_path, change, message):
    folder = tmp_path / "arch"
    shutil.copytree(exported.folders[0], folder)
    data = json.loads((folder / ARCH_FILE).read_text())
    change(data)
    (folder / ARCH_FILE).write_text(json.dumps(data))
    with pytest.raises(UserError) as e:
        load_architecture(folder)
    assert str(e.value).startswith(f"{folder / ARCH_FILE}: ") and message in str(e.value)


def test_truncated_or_missing_arch_json(exported, tmp_path):
    folder = tmp_path / "arch"
    shutil.copytree(exported.folders[0], folder)
    text = (folder / ARCH_FILE).read_text()
    (folder / ARCH_FILE).write_text(text[: len(text) // 2])
    with pytest.raises(UserError, match=r"arch\.json: not valid JSON \(.*\); export the architecture again"):
        read_architecture(folder)
    (folder / ARCH_FILE).unlink()
    with pytest.raises(UserError, match=r"no arch\.json in this folder"):
        load_architecture(folder)
    with pytest.raises(UserError, match="no such file or folder"):
        load_architecture(tmp_path / "missing")


def test_weights_of_another_placement_are_refused(exported, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "arch"
    shutil.copytree(exported.folders[0], folder)
    weights = folder / "weights.safetensors"
    save_file(
        load_file(str(weights)),
        str(weights),
        metadata={
            "placement": json.dumps(
                {"schema_version": 1, "space": "tiny", "positions": {"stem": {"op": "3d", "kt": 3}}}
            )
        },
    )
    with pytest.raises(UserError, match="trained for another placement"):
        load_architecture(folder, weights=True)
    state = load_file(str(weights))
    conv = next(k for k, v in state.items() if v.ndim == 5)  # a conv of the body, not the classifier
    state[conv] = torch.zeros(1)
    save_file(state, str(weights))
    with pytest.raises(UserError, match=rf"{re.escape(conv)} has shape \(1,\), the model of arch.json expects"):
        load_architecture(folder, num_classes=11, weights=True)
    del state[conv]
    save_file(state, str(weights))
    with pytest.raises(UserError, match=rf"does not fit the model of arch.json: missing {re.escape(conv)}"):
        load_architecture(folder, num_classes=11, weights=True)


def test_a_moved_artifact_folder_is_named_and_json_export_still_works(study, tmp_path):
    src = study.study
    moved = optuna.create_study(storage=study.url, study_name="moved", directions=src.directions)
    for k, v in src.user_attrs.items():
        moved.set_user_attr(k, str(tmp_path / "gone") if k == "artifact_dir" else v)
    moved.add_trial(_copy_trial(src.trials[0]))
    with pytest.raises(UserError, match=r"artifact folder .*gone \(study attribute artifact_dir\) does not exist"):
        export_study(study.url, "moved", tmp_path / "out", trials=[0], weights=True)
    (r,) = export_study(study.url, "moved", tmp_path / "out", trials=[0])
    assert set(r.files) == {"arch.json", "MODEL_CARD.md"}
    assert sum(p.numel() for p in load_architecture(r.folder).parameters()) == trial_attrs(src.trials[0])["params"]


def test_preprocessing_is_recorded_in_arch_json_and_the_onnx_file(exported):
    """A user feeding the exported network needs the clip it expects: frames, size, layout and
    normalisation, in arch.json and (readable from the file alone) in the ONNX metadata."""
    import onnx

    folder = exported.folders[0]
    arch = json.loads((folder / ARCH_FILE).read_text())
    pre = arch["preprocessing"]
    # the test study trains on the synthetic benchmark: floats in [0, 1], no normalisation
    assert pre["layout"] == "NCTHW" and pre["mean"] == [0.0, 0.0, 0.0] and pre["std"] == [1.0, 1.0, 1.0]
    assert (pre["frames"], pre["size"]) == (arch["input"]["frames"], arch["input"]["size"])
    meta = {p.key: p.value for p in onnx.load(str(folder / "model.onnx"), load_external_data=False).metadata_props}
    info = arch["files"]["model.onnx"]
    assert meta["placement_search.num_classes"] == str(info["num_classes"])
    assert meta["placement_search.placement"] == arch["placement_string"]
    assert json.loads(meta["placement_search.preprocessing"])["mean"] == [0.0, 0.0, 0.0]


def test_real_video_preprocessing_names_kinetics_normalisation():
    from placement_search.data.config import DataConfig
    from placement_search.data.video.transforms import KINETICS_MEAN, KINETICS_STD

    pre = DataConfig(source="/videos", frames=8, size=32, stride=4, flip="off").preprocessing(16, 112)
    assert (pre["frames"], pre["size"], pre["stride"]) == (16, 112, 4)
    assert pre["mean"] == list(KINETICS_MEAN) and pre["std"] == list(KINETICS_STD)
    assert pre["resize_short_side_to"] == round(112 * 256 / 224) and pre["flip"] == "off"
