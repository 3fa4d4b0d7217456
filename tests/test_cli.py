"""The real command line, run in subprocesses (``python -m placement_search ...``).

Every command the tests need is started once, up front, on a small pool of workers (each
call pays for importing torch), and the tests read the results. Expected numbers come from
``tests/reference_counts.py`` (hand-derived from torchvision's layouts) or from first
principles; the budget count is checked against the Python API building every placement
of the ``tiny`` space on the meta device.
"""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from placement_search import list_spaces, load_space

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference_counts as rc

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = list_spaces()

# torchvision's video ResNet-18: a stem, then 4 stages of 2 basic blocks of 2 convs
R18_POSITIONS = ["stem"] + [f"layer{s}.{b}.conv{c}" for s in range(1, 5) for b in (0, 1) for c in (1, 2)]
R18_GROUPS = ["stem"] + [f"layer{s}.{b}" for s in range(1, 5) for b in (0, 1)]  # tie = "block"
# mc3_18 by hand: 3x3x3 convs in the stem and layer1 (3 of the 9 blocks), 2D after
MC3_JSON = json.dumps(
    {
        "schema_version": 1,
        "space": "resnet18",
        "positions": {
            p: ({"op": "3d", "kt": 3} if p == "stem" or p.startswith("layer1.") else {"op": "2d"})
            for p in R18_POSITIONS
        },
    }
)
MC3_TOKENS = " ".join(["3d"] * 3 + ["2d"] * 6)
FRAMES, SIZE = 8, 96  # a clip that is no space's default

MINI_TOML = """\
schema_version = 1
name = "mini"
backbone = "tiny"
tie = "block"
choices = ["2d", "3d", "sep"]
clip = { frames = 8, size = 32 }
"""
BROKEN_TOML = MINI_TOML.replace('tie = "block"', 'tie = "layer"')

MAX_MACS, MAX_PARAMS = 450_000_000, 650_000  # given as "450M" and "650k"


def _commands(tmp: Path) -> dict[str, list[str]]:
    (tmp / "mini.toml").write_text(MINI_TOML)
    (tmp / "broken.toml").write_text(BROKEN_TOML)
    (tmp / "mc3.json").write_text(MC3_JSON)
    clip = ["--frames", str(FRAMES), "--size", str(SIZE)]
    cmds = {
        # slowest first, so that they overlap with everything else
        "count": ["space", "count", "tiny", "--max-macs", "450M", "--max-params", "650k", "--json"],
        "references": ["references", "--json"],
        "families": ["families", "resnet18", "--json"],
        "per_layer": ["flops", "resnet18", "--placement", "r2plus1d", "--per-layer", "--json"],
        "flops_name": ["flops", "resnet18", "--placement", "mc3", *clip, "--json"],
        "flops_json_text": ["flops", "resnet18", "--placement", MC3_JSON, *clip, "--json"],
        "flops_json_file": ["flops", "resnet18", "--placement", str(tmp / "mc3.json"), *clip, "--json"],
        "flops_tokens": ["flops", "resnet18", "--placement", MC3_TOKENS, *clip, "--json"],
        "show_path": ["space", "show", str(tmp / "mini.toml"), "--json"],
        "err_unknown_space": ["flops", "no_such_space", "--placement", "r3d", "--json"],
        "err_unknown_placement": ["flops", "resnet18", "--placement", "no_such_placement", "--json"],
        "err_frames_0": ["flops", "resnet18", "--placement", "r3d", "--frames", "0", "--json"],
        "err_frames_abc": ["flops", "resnet18", "--placement", "r3d", "--frames", "abc", "--json"],
        "err_clip_too_small": ["flops", "inception", "--placement", "s3d", "--frames", "2", "--size", "16", "--json"],
        "err_bad_space_file": ["space", "show", str(tmp / "broken.toml"), "--json"],
        "err_huge_budget": ["space", "count", "tiny", "--max-macs", "1e400", "--json"],
    }
    for name in SHIPPED:
        cmds[f"show_{name}"] = ["space", "show", name, "--json"]
    return cmds


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "placement_search", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def cli(tmp_path_factory) -> Callable[[str], subprocess.CompletedProcess[str]]:
    """``cli(key)``: the finished process of one of :func:`_commands` (all started at once)."""
    tmp = tmp_path_factory.mktemp("cli")
    cmds = _commands(tmp)
    pool = ThreadPoolExecutor(max_workers=2)
    futures = {key: pool.submit(_run, args) for key, args in cmds.items()}
    yield lambda key: futures[key].result()
    pool.shutdown(wait=True, cancel_futures=True)


def ok_json(proc: subprocess.CompletedProcess[str]):
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return json.loads(proc.stdout)  # the whole of stdout is one JSON document


def assert_user_error(proc: subprocess.CompletedProcess[str], *parts: str) -> str:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("placement-search: error:"), lines[0]
    for part in parts:
        assert part in lines[0], f"{part!r} missing from: {lines[0]}"
    assert proc.stdout == ""
    return lines[0]


def assert_usage_error(proc: subprocess.CompletedProcess[str], *parts: str) -> None:
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "error:" in last, proc.stderr
    for part in parts:
        assert part in last, f"{part!r} missing from: {last}"
    assert proc.stdout == ""


# -- space count against the Python API (first: it overlaps with the subprocesses) ------


def test_count_within_budget_matches_brute_force(cli):
    space = load_space("tiny")
    results = []
    for tokens in itertools.product(*(g.tokens for g in space.groups)):
        cost = space.cost(space.from_group_tokens(list(tokens)))  # built on the meta device
        results.append((cost.macs, cost.params))
    assert len(results) == 4**5
    macs = [m for m, _ in results]
    params = [p for _, p in results]
    within = sum(m <= MAX_MACS and p <= MAX_PARAMS for m, p in results)
    # the budget is a real test: each limit excludes placements the other one keeps
    assert 0 < within < sum(m <= MAX_MACS for m in macs) < len(results)
    assert within < sum(p <= MAX_PARAMS for p in params) < len(results)

    out = ok_json(cli("count"))
    assert out["space"] == "tiny"
    assert out["placements"] == len(results) == space.size
    assert out["input"] == [1, 3, 16, 64, 64]  # tiny.toml: clip = { frames = 16, size = 64 }
    assert out["budget"] == {"max_macs": MAX_MACS, "max_params": MAX_PARAMS}
    assert out["within_budget"] == within
    assert out["min_macs"] == min(macs)
    assert out["max_macs"] == max(macs)
    assert out["min_params"] == min(params)
    assert out["max_params"] == max(params)
    # 2D everywhere is the cheapest placement
    assert out["min_macs_placement"] == " ".join(["2d"] * len(space.groups))


# -- space show --------------------------------------------------------------------------


@pytest.mark.parametrize("name", SHIPPED)
def test_space_show_json(cli, name):
    info = ok_json(cli(f"show_{name}"))
    assert info["name"] == name
    assert info["positions"] and info["groups"] and info["placements"]
    groups = {g["name"]: g for g in info["groups"]}
    positions = [p["name"] for p in info["positions"]]
    assert sorted(p for g in info["groups"] for p in g["positions"]) == sorted(positions)
    for pos in info["positions"]:
        assert pos["name"] in groups[pos["group"]]["positions"]
        # tied positions offer the same choices (a position writes its default kt implicitly)
        assert len(pos["choices"]) == len(groups[pos["group"]]["choices"])
    assert info["size"] == math.prod(len(g["choices"]) for g in info["groups"])
    n = len(info["groups"])
    for required in ("all_2d", "all_3d", "all_sep", f"bottom_heavy_{n}", f"top_heavy_{n}"):
        assert required in info["placements"]
        assert len(info["placements"][required]["string"].split()) == n
    if name == "resnet18":
        assert positions == R18_POSITIONS
        assert list(groups) == R18_GROUPS
        assert info["size"] == 4**9
        assert info["placements"]["mc3"]["string"] == MC3_TOKENS
        assert info["placements"]["mc3"]["placement"] == json.loads(MC3_JSON)


def test_space_show_toml_path(cli):
    info = ok_json(cli("show_path"))
    assert info["name"] == "mini"
    assert info["path"].endswith("mini.toml")
    assert [g["name"] for g in info["groups"]] == ["stem", "layer1.0", "layer2.0", "layer3.0", "layer4.0"]
    assert info["size"] == 3**5
    assert info["clip"] == {"frames": 8, "size": 32}


# -- flops -------------------------------------------------------------------------------


def test_flops_named_placement(cli):
    out = ok_json(cli("flops_name"))
    assert isinstance(out, dict)
    expected = rc.mc3_18(frames=FRAMES, size=SIZE)
    assert out["input"] == [1, 3, FRAMES, SIZE, SIZE]
    assert out["params"] == expected["params"]
    assert out["macs"] == expected["macs"]
    assert out["flops"] == 2 * out["macs"]
    assert out["placement"] == MC3_TOKENS
    assert out["placement_json"] == json.loads(MC3_JSON)


@pytest.mark.parametrize("key", ["flops_json_text", "flops_json_file", "flops_tokens"])
def test_flops_placement_forms_agree(cli, key):
    named = ok_json(cli("flops_name"))
    out = ok_json(cli(key))
    for field in ("input", "params", "macs", "flops", "placement", "placement_json", "per_position", "fixed"):
        assert out[field] == named[field], field


def test_flops_per_layer(cli):
    out = ok_json(cli("per_layer"))
    expected = rc.r2plus1d_18(frames=16, size=112)  # resnet18's default clip
    assert out["input"] == [1, 3, 16, 112, 112]
    assert (out["params"], out["macs"], out["flops"]) == (expected["params"], expected["macs"], 2 * expected["macs"])
    layers = out["layers"]
    assert layers
    assert sum(layer["macs"] for layer in layers) == out["macs"]
    assert all(layer["flops"] == 2 * layer["macs"] for layer in layers)
    by_position: dict[str | None, int] = {}
    for layer in layers:
        by_position[layer["position"]] = by_position.get(layer["position"], 0) + layer["macs"]
    for pos, cost in out["per_position"].items():
        assert by_position.get(pos, 0) == cost["macs"], pos
    assert by_position.get(None, 0) == out["fixed"]["macs"]
    assert sum(c["macs"] for c in out["per_position"].values()) + out["fixed"]["macs"] == out["macs"]
    # torchvision's R(2+1)D stem: Conv(3 -> 45, 1x7x7, stride 1x2x2), then Conv(45 -> 64, 3x1x1)
    first = layers[0]
    assert first["kernel"] == [1, 7, 7] and first["stride"] == [1, 2, 2]
    assert first["out_shape"] == [1, 45, 16, 56, 56]
    assert first["macs"] == 45 * 16 * 56 * 56 * 3 * 7 * 7
    # the classifier: Linear(512, 400)
    assert layers[-1]["macs"] == 512 * 400


# -- families and references -------------------------------------------------------------


def test_families(cli):
    out = ok_json(cli("families"))
    rows = out["families"]
    n = len(R18_GROUPS)
    assert len(rows) == 2 * (n + 1)
    assert [r["name"] for r in rows] == [f"bottom_heavy_{k}" for k in range(n + 1)] + [
        f"top_heavy_{k}" for k in range(n + 1)
    ]
    assert out["input"] == [1, 3, 16, 112, 112]
    by_name = {r["name"]: r for r in rows}
    for k in range(n + 1):
        assert by_name[f"bottom_heavy_{k}"]["placement"].split() == ["3d"] * k + ["2d"] * (n - k)
        assert by_name[f"top_heavy_{k}"]["placement"].split() == ["2d"] * k + ["3d"] * (n - k)
    assert all(r["flops"] == 2 * r["macs"] for r in rows)

    def cost(name):
        return {"params": by_name[name]["params"], "macs": by_name[name]["macs"]}

    assert cost(f"bottom_heavy_{n}") == cost("top_heavy_0") == rc.r3d_18(frames=16, size=112)
    assert cost("bottom_heavy_3") == rc.mc3_18(frames=16, size=112)
    assert cost("bottom_heavy_0") == cost(f"top_heavy_{n}")


def test_references(cli):
    rows = ok_json(cli("references"))
    assert {r["space"] for r in rows} == set(SHIPPED)
    assert not any(r["name"].startswith(("bottom_heavy_", "top_heavy_")) for r in rows)
    r18 = {r["name"]: r for r in rows if r["space"] == "resnet18"}
    published = rc.TORCHVISION_PUBLISHED
    for name, ref, fn in (
        ("r3d", "r3d_18", rc.r3d_18),
        ("mc3", "mc3_18", rc.mc3_18),
        ("r2plus1d", "r2plus1d_18", rc.r2plus1d_18),
    ):
        row = r18[name]
        assert row["input"] == [1, 3, 16, 112, 112]
        assert row["params"] == published[ref]["num_params"]
        assert row["macs"] == fn(frames=16, size=112)["macs"]
        assert round(row["macs"] / 1e9, 3) == published[ref]["_ops"]
        assert row["flops"] == 2 * row["macs"]
    assert r18["r3d"]["params"] == 33371472


# -- errors ------------------------------------------------------------------------------


def test_error_unknown_space(cli):
    assert_user_error(cli("err_unknown_space"), "'no_such_space'", *SHIPPED)


def test_error_unknown_placement(cli):
    assert_user_error(cli("err_unknown_placement"), "'no_such_placement'", "named placements", "r3d", "mc3")


@pytest.mark.parametrize(("key", "value"), [("err_frames_0", "'0'"), ("err_frames_abc", "'abc'")])
def test_error_bad_frames(cli, key, value):
    assert_usage_error(cli(key), "--frames", "integer >= 1", value)


def test_error_clip_too_small(cli):
    assert_user_error(cli("err_clip_too_small"), "(1, 3, 2, 16, 16)", "too small")


def test_error_bad_space_file(cli):
    assert_user_error(cli("err_bad_space_file"), "broken.toml", "tie", "'layer'", "'block'")


def test_error_huge_budget(cli):
    assert_usage_error(cli("err_huge_budget"), "--max-macs")
