"""``analyze temporal``: weight share per temporal offset, checked on kernels whose answer is known."""

from __future__ import annotations

import argparse
import csv
import json
import math
import re

import pytest
import torch
from safetensors.torch import save_file

from placement_search import UserError, load_space
from placement_search.cli import main
from placement_search.inspect.temporal import (
    analyze_temporal,
    load_weights,
    natural_key,
    render_figure,
    render_table,
    temporal_kernels,
    write_output,
)


def kernel(magnitudes: list[float], out: int = 4, inp: int = 3, k: int = 3, seed: int = 0) -> torch.Tensor:
    """A [out, in, kt, k, k] weight whose slice at time t has |w| = magnitudes[t] everywhere, random signs."""
    g = torch.Generator().manual_seed(seed)
    signs = torch.randint(0, 2, (out, inp, len(magnitudes), k, k), generator=g) * 2.0 - 1.0
    return signs * torch.tensor(magnitudes).view(1, 1, -1, 1, 1)


def only(state: dict[str, torch.Tensor]):
    (row,) = temporal_kernels(state)
    return row


def test_all_mass_at_the_centre():
    row = only({"conv.weight": kernel([0, 2.5, 0])})
    assert row.offsets == (-1, 0, 1)
    assert row.shares == (0.0, 1.0, 0.0)
    assert row.centre_share == 1.0
    assert row.kind == "3d" and row.kt == 3 and row.shape == (4, 3, 3, 3, 3)


@pytest.mark.parametrize("kt", [3, 5, 7])
def test_uniform_magnitudes_give_one_over_kt(kt):
    row = only({"conv.weight": kernel([0.7] * kt)})
    assert row.offsets == tuple(range(-(kt // 2), kt // 2 + 1))
    assert row.shares == pytest.approx([1 / kt] * kt, abs=1e-12)
    assert row.centre_share == pytest.approx(1 / kt, abs=1e-12)


def test_shares_are_of_magnitudes():
    # |w| = 1 at t=0 (half of them negative), 3 at t=2: 1 / (1 + 3) and 3 / (1 + 3)
    row = only({"conv.weight": kernel([1, 0, 3])})
    assert row.shares == pytest.approx([0.25, 0.0, 0.75], abs=1e-12)
    assert row.centre_share == 0.0


def test_low_precision_weights():
    row = only({"conv.weight": kernel([1, 0, 3]).to(torch.bfloat16)})
    assert row.shares == pytest.approx([0.25, 0.0, 0.75], abs=1e-12)


def test_even_kt_uses_indices_and_has_no_centre():
    row = only({"conv.weight": kernel([1, 1, 2, 0])})
    assert not row.centred and row.offsets == (0, 1, 2, 3)
    assert row.shares == pytest.approx([0.25, 0.25, 0.5, 0.0])
    assert row.centre_share is None
    assert row.to_dict()["offset_origin"] == "start"


def test_all_zero_kernel_has_undefined_shares():
    row = only({"conv.weight": torch.zeros(2, 2, 3, 1, 1)})
    assert all(math.isnan(s) for s in row.shares)
    assert row.to_dict()["shares"] == [None, None, None]


@pytest.mark.parametrize("kind", ["sep", "2plus1d"])
def test_factorised_ops_have_temporal_kernels(kind):
    state = load_space("tiny").build(f"all_{kind}", num_classes=11).state_dict()
    rows = temporal_kernels(state)
    assert len(rows) == 9  # stem and two convs per block; the 1 x k x k halves and 1x1x1 downsamples are not temporal
    assert {r.kind for r in rows} == {"temporal"}
    assert all(r.shape[2:] == (3, 1, 1) for r in rows)


def test_2d_kernels_and_other_tensors_are_excluded():
    state = {
        "a.weight": kernel([1, 2, 1]),
        "b.weight": torch.ones(4, 3, 1, 3, 3),  # 2D conv
        "down.weight": torch.ones(4, 3, 1, 1, 1),
        "bn.weight": torch.ones(4),
        "bn.num_batches_tracked": torch.tensor(3),
        "fc.weight": torch.ones(10, 4),
        "conv2d.weight": torch.ones(4, 3, 3, 3),  # a 4-D (image) conv has no time axis
        "mask": torch.ones(2, 2, 3, 1, 1, dtype=torch.long),  # 5-D but not weights
    }
    assert [r.name for r in temporal_kernels(state)] == ["a.weight"]


def test_depth_by_natural_sort():
    names = ["layer10.weight", "layer2.weight", "layer1.weight", "layer2.x.weight", "layer3.weight"]
    # dict (and safetensors file) order is not network order
    state = {n: kernel([1, 1, 1]) if n != "layer3.weight" else torch.ones(2, 2, 1, 3, 3) for n in names}
    rows = temporal_kernels(state)
    assert [(r.depth, r.name) for r in rows] == [
        (0, "layer1.weight"),
        (1, "layer2.weight"),
        (2, "layer2.x.weight"),
        (4, "layer10.weight"),  # depth 3 is the 2D layer3
    ]
    assert sorted(["a10", "a9", "b1", "a10.b2", "a10.b10"], key=natural_key) == ["a9", "a10", "a10.b2", "a10.b10", "b1"]


def test_depth_by_given_order():
    state = {"stem.weight": kernel([0, 1, 0]), "layer1.weight": kernel([1, 1, 1]), "extra.weight": kernel([1, 0, 1])}
    rows = temporal_kernels(state, order=["stem.weight", "layer1.weight"])
    assert [r.name for r in rows] == ["stem.weight", "layer1.weight", "extra.weight"]


# -- a real model of the package, through files and the command --------------------------


PATTERN = [1.0, 0.0, 3.0]  # shares 0.25, 0, 0.75


@pytest.fixture(scope="module")
def tiny_3d() -> dict[str, torch.Tensor]:
    """``tiny`` all_3d with every temporal conv's weight set to |w| = 1 at t=0, 0 at t=1, 3 at t=2."""
    model = load_space("tiny").build("all_3d", num_classes=11)
    with torch.no_grad():
        for i, m in enumerate(model.modules()):
            if isinstance(m, torch.nn.Conv3d) and m.kernel_size[0] > 1:
                w = kernel(PATTERN, *m.weight.shape[:2], k=m.kernel_size[1], seed=i)
                m.weight.copy_(w)
    return {k: v.clone() for k, v in model.state_dict().items()}


def export(folder, state, placement="all_3d", arch=True):
    folder.mkdir(parents=True, exist_ok=True)
    save_file(state, str(folder / "weights.safetensors"))
    if arch:
        space = load_space("tiny")
        (folder / "arch.json").write_text(
            json.dumps(
                {
                    "schema_version": 1,
                    "space": {"name": space.name, "toml": space.path.read_text(encoding="utf-8")},
                    "placement": space.resolve(placement).to_dict(),
                    "num_classes": 11,
                }
            )
        )
    return folder


def run(capsys, *argv: str) -> str:
    assert main(["analyze", "temporal", *argv]) == 0
    return capsys.readouterr().out


TINY_ORDER = [
    "stem.0.weight",
    "layer1.0.conv1.0.weight",
    "layer1.0.conv2.0.weight",
    "layer2.0.conv1.0.weight",
    "layer2.0.conv2.0.weight",
    "layer3.0.conv1.0.weight",
    "layer3.0.conv2.0.weight",
    "layer4.0.conv1.0.weight",
    "layer4.0.conv2.0.weight",
]


def test_export_folder_end_to_end(tmp_path, tiny_3d, capsys):
    folder = export(tmp_path / "export", tiny_3d)
    data = json.loads(run(capsys, str(folder), "--json"))
    assert data["order"] == "model" and data["conv_layers"] == 12 and data["temporal_kernels"] == 9
    assert [k["name"] for k in data["kernels"]] == TINY_ORDER  # network order: the stem first
    # the 1x1x1 downsample of layer2..4 sit before each next block in the network
    assert [k["depth"] for k in data["kernels"]] == [0, 1, 2, 3, 4, 6, 7, 9, 10]
    for k in data["kernels"]:
        assert k["kind"] == "3d" and k["offsets"] == [-1, 0, 1]
        assert k["shares"] == pytest.approx([0.25, 0.0, 0.75], abs=1e-12)
        assert k["centre_share"] == 0.0

    table = run(capsys, str(folder))
    assert "9 temporal kernels among 12 conv layers" in table and "network order" in table
    line = next(line for line in table.splitlines() if "stem.0.weight" in line)
    assert line.split()[0] == "0" and line.split()[-4:] == ["0.250", "0.000", "0.750", "0.000"]


def test_weights_alone_sort_by_name(tmp_path, tiny_3d):
    path = tmp_path / "model.safetensors"
    save_file(tiny_3d, str(path))
    analysis = analyze_temporal(path)
    assert analysis.order == "names"
    names = [k.name for k in analysis.kernels]
    assert names == TINY_ORDER[1:] + ["stem.0.weight"]  # 'stem' sorts after 'layer4': no architecture to say otherwise
    assert "natural sort" in render_table(analysis)


def test_unusable_arch_json_falls_back_to_names(tmp_path, tiny_3d):
    folder = export(tmp_path / "wrong", tiny_3d, placement="all_sep")  # arch of another model
    analysis = analyze_temporal(folder)
    assert analysis.order == "names" and len(analysis.kernels) == 9
    assert any("do not match" in n for n in analysis.notes)
    (folder / "arch.json").write_text("{not json")
    analysis = analyze_temporal(folder)
    assert analysis.order == "names" and any("arch.json could not be used" in n for n in analysis.notes)


def test_trial_weights_metadata_gives_model_order(tmp_path, tiny_3d):
    # search trials store their placement in the weights' metadata (search/worker.py)
    path = tmp_path / "trial.safetensors"
    placement = load_space("tiny").resolve("all_3d").to_dict()
    save_file(tiny_3d, str(path), metadata={"placement": json.dumps(placement)})
    analysis = analyze_temporal(path)
    assert analysis.order == "model" and [k.name for k in analysis.kernels] == TINY_ORDER


def test_pt_state_dict_and_checkpoint(tmp_path, tiny_3d):
    torch.save(tiny_3d, tmp_path / "model.pt")
    analysis = analyze_temporal(tmp_path / "model.pt")
    assert analysis.order == "file" and [k.name for k in analysis.kernels] == TINY_ORDER
    torch.save({"epoch": 3, "model": tiny_3d}, tmp_path / "ckpt.pth")
    analysis = analyze_temporal(tmp_path / "ckpt.pth")
    assert len(analysis.kernels) == 9 and any("'model'" in n for n in analysis.notes)
    assert analysis.kernels[0].shares == pytest.approx([0.25, 0.0, 0.75], abs=1e-12)


def test_pt_with_pickled_objects_is_refused(tmp_path):
    torch.save({"conv.weight": kernel([1, 1, 1]), "obj": argparse.Namespace(a=1)}, tmp_path / "evil.pt")
    with pytest.raises(UserError, match=r"evil\.pt.*weights_only"):
        load_weights(tmp_path / "evil.pt")


def test_outputs(tmp_path, tiny_3d, capsys):
    folder = export(tmp_path / "export", tiny_3d)
    html = tmp_path / "out" / "deep" / "temporal.html"  # parent folders are created
    out = run(capsys, str(folder), "-o", str(html))
    assert str(html) in out
    text = html.read_text(encoding="utf-8")
    assert "plotly" in text and "<script src=" not in text  # self-contained: opens offline

    run(capsys, str(folder), "-o", str(tmp_path / "t.csv"))
    rows = list(csv.DictReader((tmp_path / "t.csv").open()))
    assert len(rows) == 9 * 3
    assert rows[0]["name"] == "stem.0.weight" and rows[0]["offset"] == "-1" and float(rows[0]["share"]) == 0.25

    run(capsys, str(folder), "-o", str(tmp_path / "t.json"))
    data = json.loads((tmp_path / "t.json").read_text())
    assert data["kernels"][0]["shares"] == pytest.approx([0.25, 0.0, 0.75])


def test_figure_data():
    state = {"a.weight": kernel([0, 1, 0]), "b.weight": kernel([1, 1, 1, 1, 1]), "c.weight": torch.ones(2, 2, 3, 1, 1)}
    fig = render_figure(analyze_state(state))
    heat = fig.data[0]
    assert list(heat.y) == [-2, -1, 0, 1, 2] and list(heat.x) == ["a.weight", "b.weight", "c.weight"]
    assert heat.z[2][0] == 1.0 and heat.z[0][0] is None and heat.z[0][1] == pytest.approx(0.2)
    kinds = {t.name for t in fig.data[2:]}
    assert {"full 3D (kt x k x k)", "temporal kt x 1 x 1 (sep, 2plus1d)", "spread evenly (1/kt)"} == kinds


def analyze_state(state):
    from placement_search.inspect.temporal import TemporalAnalysis

    rows = temporal_kernels(state)
    return TemporalAnalysis("made-up", "names", len(rows), tuple(rows))


# -- mistakes -----------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match=r"nope\.safetensors: no such file"):
        analyze_temporal(tmp_path / "nope.safetensors")


def test_unknown_file_kind(tmp_path):
    (tmp_path / "w.txt").write_text("hello")
    with pytest.raises(UserError, match=r"w\.txt: unknown kind of file '\.txt'"):
        analyze_temporal(tmp_path / "w.txt")


def test_not_safetensors(tmp_path):
    (tmp_path / "w.safetensors").write_bytes(b"garbage")
    with pytest.raises(UserError, match=r"w\.safetensors: not a readable safetensors file"):
        analyze_temporal(tmp_path / "w.safetensors")


def test_folder_without_weights(tmp_path):
    with pytest.raises(UserError, match=r"must hold weights\.safetensors"):
        analyze_temporal(tmp_path)


def test_all_2d_model(tmp_path):
    path = tmp_path / "flat.safetensors"
    save_file(load_space("tiny").build("all_2d", num_classes=11).state_dict(), str(path))
    with pytest.raises(UserError, match=r"flat\.safetensors: no temporal kernels .* all-2D model"):
        analyze_temporal(path)


def test_bad_output_extension(tmp_path, tiny_3d, capsys):
    folder = export(tmp_path / "export", tiny_3d)
    assert main(["analyze", "temporal", str(folder), "-o", str(tmp_path / "out.png")]) == 2
    assert re.search(r"out\.png.*\.html.*\.csv.*\.json", capsys.readouterr().err)
    with pytest.raises(UserError, match="expected a name ending"):
        write_output(analyze_temporal(folder), tmp_path / "noext")


def test_command_line_errors(tmp_path, capsys):
    """Through ``placement-search``'s ``main``: one error line, exit status 2."""
    (tmp_path / "w.txt").write_text("hello")
    for argv, message in [
        ([str(tmp_path / "missing.pt")], "missing.pt: no such file"),
        ([str(tmp_path / "w.txt")], "w.txt: unknown kind of file"),
        ([str(tmp_path), "-o", str(tmp_path / "f.png")], "f.png"),
    ]:
        assert main(["analyze", "temporal", *argv]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("placement-search: error: ") and message in err
