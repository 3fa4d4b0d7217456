"""Validation of search-space TOML files and of placements.

Bad space files are written into ``tmp_path``, each a minimal valid file with one thing
broken, and must raise :class:`placement_search.UserError` whose message names the file,
the field and what was expected. Placement-level mistakes go through
:meth:`SearchSpace.resolve`. The positive cases check every shipped space: its generated
and published named placements, its size and the placement JSON round trip.

Expected values come from the architectures (torchvision's video ResNets, Inception-v1)
and the documented file format, not from the package's own output.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from placement_search import Choice, Placement, UserError, list_spaces, load_space

KNOWN_KINDS = ("'2d'", "'3d'", "'sep'", "'2plus1d'")
KNOWN_BACKBONES = ("'inception'", "'resnet'", "'tiny'")

# A minimal valid space: the tiny backbone (a stem and one basic block per stage), tied per
# block, three choices: 3 ** 5 placements.
BASE = """\
schema_version = 1
name = "mini"
description = "a minimal valid space for the tests"
backbone = "tiny"
tie = "block"
choices = ["2d", "3d", "sep"]
family_kind = "3d"
clip = { frames = 8, size = 32 }

[backbone_args]
widths = [16, 32, 64, 128]

[placements.stem3d]
description = "3d in the stem only"
ops = { stem = "3d", "*" = "2d" }
"""
MINI_POSITIONS = ["stem"] + [f"layer{s}.0.conv{c}" for s in range(1, 5) for c in (1, 2)]
MINI_GROUPS = ["stem", "layer1.0", "layer2.0", "layer3.0", "layer4.0"]

# torchvision's video ResNet-18: a stem, then 4 stages of 2 basic blocks of 2 convs.
RESNET18_POSITIONS = ["stem"] + [f"layer{s}.{b}.conv{c}" for s in range(1, 5) for b in (0, 1) for c in (1, 2)]
# Decisions per shipped space, from the architectures and each file's `tie`:
# resnet18 per block: stem + 4 x 2 blocks; resnet34 per stage: stem + 4 stages;
# tiny per block: stem + 4 x 1 block; inception untied: conv1, conv2c and 9 Mixed blocks.
EXPECTED_GROUPS = {"resnet18": 9, "resnet34": 5, "tiny": 5, "inception": 11}
PUBLISHED = {
    "inception": ["i3d", "s3d", "s3d_g"],
    "resnet18": ["r2d", "r3d", "mc3", "rmc3", "r2plus1d"],
}


def variant(*edits: tuple[str, str], append: str = "") -> str:
    """BASE with each (old, new) replaced once (old must occur) and ``append`` added."""
    text = BASE
    for old, new in edits:
        assert old in text, f"test bug: {old!r} is not in the base file"
        text = text.replace(old, new, 1)
    return text + append


def write(tmp_path: Path, text: str | bytes, name: str = "space.toml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def assert_user_error(path: Path, expected: tuple[str, ...] | list[str]) -> str:
    with pytest.raises(UserError) as info:
        load_space(path)
    msg = str(info.value)
    assert str(path) in msg, f"message does not name the file: {msg}"
    for part in expected:
        assert part in msg, f"{part!r} missing from: {msg}"
    return msg


# -- the base file is valid ---------------------------------------------------------------


def test_base_file_is_valid(tmp_path):
    space = load_space(write(tmp_path, BASE))
    assert space.name == "mini"
    assert space.position_names == MINI_POSITIONS
    assert [g.name for g in space.groups] == MINI_GROUPS
    assert space.size == 3**5
    assert space.clip == (8, 32)
    assert space.family_kind == "3d"
    stem3d = space.named["stem3d"].placement
    assert stem3d["stem"] == Choice("3d", 3)  # the tiny backbone's default temporal kernel is 3
    assert all(stem3d[p] == Choice("2d") for p in MINI_POSITIONS[1:])
    assert space.named["stem3d"].in_space


# -- one broken thing per file ------------------------------------------------------------

BAD_FILES = [
    pytest.param(variant(('tie = "block"', 'tie = = "block"')), ["TOML", "line 5"], id="not-toml"),
    pytest.param(variant(("\n[backbone_args]", "\n[backbone_args")), ["TOML", "line 10"], id="not-toml-header"),
    pytest.param(
        variant(("schema_version = 1", "schema_version = 2")), ["schema_version", "expected 1", "got 2"], id="schema-2"
    ),
    pytest.param(variant(("schema_version = 1\n", "")), ["schema_version", "expected 1", "None"], id="schema-missing"),
    pytest.param(
        variant(("schema_version = 1", 'schema_version = "1"')),
        ["schema_version", "expected 1", "'1'"],
        id="schema-string",
    ),
    pytest.param(
        variant(("schema_version = 1", "schema_version = true")),
        ["schema_version", "expected 1", "True"],
        id="schema-bool",  # True == 1 in Python, but a boolean is not the integer 1
    ),
    pytest.param(
        variant(("schema_version = 1", "schema_version = 1.0")),
        ["schema_version", "expected 1", "1.0"],
        id="schema-float",
    ),
    pytest.param(
        variant(('tie = "block"', 'tie = "block"\ncolour = "red"')),
        ["unknown field 'colour'", "allowed fields", "backbone_args", "family_kind", "placements", "clip"],
        id="unknown-top-field",
    ),
    pytest.param(
        variant(('backbone = "tiny"', 'backbone = "vgg"')),
        ["backbone", "'vgg'", "known backbones", *KNOWN_BACKBONES],
        id="unknown-backbone",
    ),
    pytest.param(
        variant(('backbone = "tiny"', "backbone = 3")), ["backbone", "backbone name", "3"], id="backbone-not-string"
    ),
    pytest.param(
        variant(("widths = [16, 32, 64, 128]", "width = [16, 32, 64, 128]")),
        ["backbone_args", "unknown field 'width'", "allowed fields", "widths", "layers", "temporal_stride"],
        id="unknown-backbone-arg",
    ),
    pytest.param(
        variant(("widths = [16, 32, 64, 128]", 'depth = "x"')),
        ["backbone_args.depth", "one of 18, 34", "'x'"],
        id="backbone-arg-depth-type",
    ),
    pytest.param(
        variant(("widths = [16, 32, 64, 128]", 'temporal_stride = "sometimes"')),
        ["backbone_args.temporal_stride", "'by_op'", "'always'", "'never'", "'sometimes'"],
        id="backbone-arg-literal",
    ),
    pytest.param(
        variant(("widths = [16, 32, 64, 128]", 'widths = "wide"')),
        ["backbone_args.widths", "a list of integers", "'wide'"],
        id="backbone-arg-list-type",
    ),
    pytest.param(
        variant(("widths = [16, 32, 64, 128]", "stem_kt = true")),
        ["backbone_args.stem_kt", "an integer", "True"],
        id="backbone-arg-bool-for-int",
    ),
    pytest.param(
        variant(("widths = [16, 32, 64, 128]", 'dropout = "high"')),
        ["backbone_args.dropout", "a number", "'high'"],
        id="backbone-arg-float-type",
    ),
    pytest.param(
        variant(("widths = [16, 32, 64, 128]", "widths = [16, 32]")),
        ["backbone_args", "widths", "stages"],
        id="backbone-arg-inconsistent",
    ),
    pytest.param(
        variant(('choices = ["2d", "3d", "sep"]', 'choices = ["2d", "4d"]')),
        ["choices", "unknown op kind '4d'", "known kinds", *KNOWN_KINDS],
        id="unknown-op-in-choices",
    ),
    pytest.param(
        variant(('choices = ["2d", "3d", "sep"]', "choices = []")),
        ["choices", "non-empty list of strings"],
        id="empty-choices",
    ),
    pytest.param(
        variant(append='\n[positions.stem]\nchoices = ["2d", "conv"]\n'),
        ["positions.stem.choices", "'conv'", *KNOWN_KINDS],
        id="unknown-op-in-position-choices",
    ),
    pytest.param(
        variant(('family_kind = "3d"', 'family_kind = "3d"\nkt = [2]')),
        ["kt", "odd integers >= 1", "[2]"],
        id="kt-even",
    ),
    pytest.param(
        variant(('family_kind = "3d"', 'family_kind = "3d"\nkt = [0]')),
        ["kt", "odd integers >= 1", "[0]"],
        id="kt-zero",
    ),
    pytest.param(
        variant(('family_kind = "3d"', 'family_kind = "3d"\nkt = [3, 4]')),
        ["kt", "odd integers >= 1", "[3, 4]"],
        id="kt-one-even",
    ),
    pytest.param(
        variant(append="\n[positions.stem]\nkt = [4]\n"),
        ["positions.stem.kt", "odd integers >= 1", "[4]"],
        id="position-kt-even",
    ),
    pytest.param(
        variant(('choices = ["2d", "3d", "sep"]', 'choices = ["2d", "3d:4"]')),
        ["choices", "odd integer", "kt=4"],
        id="kt-even-in-token",
    ),
    pytest.param(
        variant(('choices = ["2d", "3d", "sep"]', 'choices = ["2d:3", "3d"]')),
        ["choices", "'2d'", "no temporal kernel", "'2d:3'"],
        id="kt-on-2d-token",
    ),
    pytest.param(
        variant(('tie = "block"', 'tie = "layer"')),
        ["tie", "'none'", "'block'", "'stage'", "'layer'"],
        id="bad-tie",
    ),
    pytest.param(
        variant(append='\n[[groups]]\nname = "head"\npositions = ["layer9.*"]\n'),
        ["groups[0].positions", "'layer9.*'", "matches no position", "stem", "layer4.0.conv2"],
        id="group-pattern-matches-nothing",
    ),
    pytest.param(
        variant(append='\n[[groups]]\nname = "head"\npositions = "layer4.*"\n'),
        ["groups[0].positions", "non-empty list of strings"],
        id="group-positions-not-list",
    ),
    pytest.param(
        variant(append='\n[positions."layer9.*"]\nkt = [3]\n'),
        ["positions.layer9.*", "matches no position"],
        id="position-pattern-matches-nothing",
    ),
    pytest.param(
        variant(append='\n[positions."layer1.0.conv1"]\nchoices = ["2d", "3d"]\n'),
        ["group 'layer1.0'", "'layer1.0.conv1'", "'layer1.0.conv2'", "different choices"],
        id="tied-positions-differ",
    ),
    pytest.param(
        variant(
            ('tie = "block"', 'tie = "none"'),
            append='\n[positions."layer4.*"]\nchoices = ["2d", "sep"]\n\n'
            '[[groups]]\nname = "late"\npositions = ["layer3.*", "layer4.*"]\n',
        ),
        ["group 'late'", "'layer3.0.conv1'", "'layer4.0.conv1'", "different choices"],
        id="explicit-group-positions-differ",
    ),
    pytest.param(
        variant(('ops = { stem = "3d",', 'ops = { stem = "4d",')),
        ["placements.stem3d.ops.stem", "unknown op kind '4d'", *KNOWN_KINDS],
        id="named-unknown-op",
    ),
    pytest.param(
        variant(('ops = { stem = "3d", "*" = "2d" }', 'ops = { "layer9.*" = "3d", "*" = "2d" }')),
        ["placements.stem3d.ops", "'layer9.*'", "matches no position", "layer1.0.conv1"],
        id="named-pattern-matches-nothing",
    ),
    pytest.param(
        variant(('ops = { stem = "3d", "*" = "2d" }', 'ops = { stem = "3d" }')),
        ["placements.stem3d.ops", "no op for position", "layer1.0.conv1", "layer4.0.conv2", "'*'"],
        id="named-missing-positions",
    ),
    pytest.param(
        variant(('ops = { stem = "3d", "*" = "2d" }', 'ops = { "layer1.0.conv1" = "3d", "*" = "2d" }')),
        ["placements.stem3d", "'layer1.0.conv1'", "'layer1.0.conv2'", "tied", "group 'layer1.0'"],
        id="named-violates-tie",
    ),
    pytest.param(
        variant(("[placements.stem3d]", "[placements.all_3d]")),
        ["placements.all_3d", "taken by a generated placement"],
        id="named-takes-generated-name",
    ),
    pytest.param(
        variant(
            ('ops = { stem = "3d", "*" = "2d" }', 'ops = { stem = "3d", "*" = "2d" }\nbackbone = { gating = true }')
        ),
        ["placements.stem3d.backbone", "unknown field 'gating'", "allowed fields", "widths"],
        id="named-unknown-backbone-override",
    ),
    pytest.param(
        variant(('ops = { stem = "3d", "*" = "2d" }', 'ops = { stem = 3, "*" = "2d" }')),
        ["placements.stem3d.ops.stem", "op token", "got 3"],
        id="named-op-not-string",
    ),
    pytest.param(
        variant(("clip = { frames = 8, size = 32 }", "clip = { frames = 0, size = 32 }")),
        ["clip", "{ frames = T, size = S }", "positive integers", "'frames': 0"],
        id="clip-zero",
    ),
    pytest.param(
        variant(("clip = { frames = 8, size = 32 }", "clip = { frames = 8, height = 32 }")),
        ["clip", "{ frames = T, size = S }", "'height'"],
        id="clip-unknown-key",
    ),
    pytest.param(
        variant(("clip = { frames = 8, size = 32 }", 'clip = { frames = 8, size = "32" }')),
        ["clip", "positive integers", "'32'"],
        id="clip-string-value",
    ),
    pytest.param(
        variant(("clip = { frames = 8, size = 32 }", 'clip = "8x32"')),
        ["clip", "{ frames = T, size = S }", "'8x32'"],
        id="clip-not-table",
    ),
    pytest.param(
        variant(('family_kind = "3d"', 'family_kind = "2d"')),
        ["family_kind", "temporal kind", "3d, sep, 2plus1d", "'2d'"],
        id="family-kind-2d",
    ),
    pytest.param(
        variant(('family_kind = "3d"', 'family_kind = "4d"')),
        ["family_kind", "temporal kind", "3d, sep, 2plus1d", "'4d'"],
        id="family-kind-unknown",
    ),
    pytest.param(
        variant(('choices = ["2d", "3d", "sep"]', 'choices = ["2d", "sep"]')),
        ["family_kind '3d'", "not offered", "'sep'"],
        id="family-kind-not-offered",
    ),
    pytest.param(
        variant(('family_kind = "3d"', 'family_kind = ["3d"]')),
        ["family_kind", "temporal kind", "['3d']"],
        id="family-kind-list",  # an unhashable value must not escape as TypeError
    ),
    pytest.param(
        variant(('name = "mini"', 'name = "has space"')),
        ["name", "letters, digits", "'has space'"],
        id="bad-name",
    ),
]


@pytest.mark.parametrize(("text", "expected"), BAD_FILES)
def test_bad_space_file(tmp_path, text, expected):
    assert_user_error(write(tmp_path, text), expected)


def test_binary_space_file(tmp_path):
    """Not UTF-8: a UserError (not UnicodeDecodeError, which the command line would print as a traceback)."""
    assert_user_error(write(tmp_path, b"\xff\xfe\x00\x01 not a text file"), ["TOML"])


def test_missing_space_file(tmp_path):
    path = tmp_path / "nope.toml"
    with pytest.raises(UserError, match="does not exist") as info:
        load_space(path)
    assert str(path) in str(info.value)


def test_unknown_space_name_lists_shipped_spaces():
    with pytest.raises(UserError) as info:
        load_space("no_such_space")
    msg = str(info.value)
    assert "'no_such_space'" in msg
    for name in list_spaces():
        assert name in msg


@pytest.mark.parametrize(
    "choices",
    [
        pytest.param('["2d", "3d", "sep", "3d:3"]', id="top-level"),
        pytest.param('["2d", "3d:3", "3d"]', id="top-level-reversed"),
    ],
)
def test_alias_tokens_do_not_inflate_space(tmp_path, choices):
    """'3d' and '3d:3' are the same op where the default kt is 3 (the tiny backbone): listing
    both must not count every placement twice (space.size would be 4**5, with 3**5 distinct)."""
    path = write(tmp_path, variant(('choices = ["2d", "3d", "sep"]', f"choices = {choices}")))
    try:
        space = load_space(path)
    except UserError as e:
        assert str(path) in str(e)
        assert "'3d'" in str(e) and "'3d:3'" in str(e), str(e)
        return
    assert space.size == (3 if "sep" in choices else 2) ** 5


def test_alias_tokens_in_position_override(tmp_path):
    text = variant(append='\n[positions.stem]\nchoices = ["2d", "sep:3", "sep"]\n')
    path = write(tmp_path, text)
    try:
        space = load_space(path)
    except UserError as e:
        assert str(path) in str(e) and "stem" in str(e), str(e)
        return
    assert len(space.groups[0].tokens) == 2


# -- placements through SearchSpace.resolve -----------------------------------------------


@pytest.fixture(scope="module")
def resnet18():
    return load_space("resnet18")


def _mc3_dict() -> dict:
    """torchvision mc3_18 by hand: 3x3x3 convs in the stem and layer1, 2D after."""
    return {
        "schema_version": 1,
        "space": "resnet18",
        "positions": {
            p: ({"op": "3d", "kt": 3} if p == "stem" or p.startswith("layer1.") else {"op": "2d"})
            for p in RESNET18_POSITIONS
        },
    }


def _mc3_json(edit=None) -> str:
    d = _mc3_dict()
    if edit:
        edit(d)
    return json.dumps(d)


def _set(key, value):
    return lambda d: d.__setitem__(key, value)


def _set_pos(pos, value):
    return lambda d: d["positions"].__setitem__(pos, value)


def test_resnet18_positions_and_hand_written_mc3(resnet18):
    assert resnet18.position_names == RESNET18_POSITIONS
    assert resnet18.resolve(_mc3_json()) == resnet18.named["mc3"].placement


BAD_PLACEMENTS = [
    pytest.param(_mc3_json(_set("schema_version", 2)), ["schema_version", "expected 1", "got 2"], id="json-schema-2"),
    pytest.param(
        _mc3_json(_set("schema_version", True)),
        ["schema_version", "expected 1", "True"],
        id="json-schema-bool",
    ),
    pytest.param(_mc3_json(_set("space", "tiny")), ["'tiny'", "'resnet18'"], id="json-other-space"),
    pytest.param(
        _mc3_json(_set("colour", "red")),
        ["unknown field", "'colour'", "'schema_version'", "'positions'"],
        id="json-unknown-field",
    ),
    pytest.param(
        _mc3_json(_set_pos("layer9.0.conv1", {"op": "2d"})),
        ["unknown position 'layer9.0.conv1'", "stem", "layer4.1.conv2"],
        id="json-unknown-position",
    ),
    pytest.param(
        _mc3_json(lambda d: d["positions"].pop("layer4.1.conv2")),
        ["no choice for position", "layer4.1.conv2"],
        id="json-missing-position",
    ),
    pytest.param(
        _mc3_json(_set_pos("stem", {"op": "4d", "kt": 3})),
        ["positions['stem'].op", "unknown op kind '4d'", *KNOWN_KINDS],
        id="json-unknown-op",
    ),
    pytest.param(
        _mc3_json(_set_pos("layer4.1.conv2", {"op": "2d", "kt": 3})),
        ["positions['layer4.1.conv2']", "'2d'", "no temporal kernel", "kt=3"],
        id="json-kt-on-2d",
    ),
    pytest.param(
        _mc3_json(_set_pos("stem", {"op": "3d", "kt": 4})),
        ["positions['stem']", "odd integer", "kt=4"],
        id="json-kt-even",
    ),
    pytest.param(
        _mc3_json(_set_pos("stem", {"op": "3d", "kt": "3"})),
        ["positions['stem'].kt", "odd integer", "'3'"],
        id="json-kt-string",
    ),
    pytest.param(
        _mc3_json(_set_pos("layer4.1.conv2", {"op": "3d", "kt": 3})),
        ["'layer4.1.conv1'", "'layer4.1.conv2'", "tied", "group 'layer4.1'"],
        id="json-violates-tie",
    ),
    pytest.param("{not json", ["not valid JSON"], id="not-json"),
    pytest.param("3d 2d", ["2 tokens", "expected 9 (one per group)", "17 (one per position)"], id="two-tokens"),
    pytest.param(
        " ".join(["3d"] * 10), ["10 tokens", "expected 9 (one per group)", "17 (one per position)"], id="ten-tokens"
    ),
    pytest.param(
        "2d:3 " + " ".join(["2d"] * 8), ["group 'stem'", "'2d'", "no temporal kernel", "'2d:3'"], id="token-kt-on-2d"
    ),
    pytest.param(
        "4d " + " ".join(["2d"] * 8), ["group 'stem'", "unknown op kind '4d'", *KNOWN_KINDS], id="token-unknown-op"
    ),
    pytest.param(
        "nosuch",
        ["'nosuch'", "not a named placement", "'resnet18'", "named placements are", "r3d", "mc3", "all_2d"],
        id="unknown-name",
    ),
]


@pytest.mark.parametrize(("spec", "expected"), BAD_PLACEMENTS)
def test_bad_placement(resnet18, spec, expected):
    with pytest.raises(UserError) as info:
        resnet18.resolve(spec)
    msg = str(info.value)
    assert msg.startswith("--placement"), msg  # names what was given
    for part in expected:
        assert part in msg, f"{part!r} missing from: {msg}"


def test_bad_placement_file_names_the_file(resnet18, tmp_path):
    path = tmp_path / "p.json"
    path.write_text(_mc3_json(_set_pos("stem", {"op": "4d", "kt": 3})))
    with pytest.raises(UserError) as info:
        resnet18.resolve(str(path))
    assert str(path) in str(info.value)
    assert "'4d'" in str(info.value)
    missing = tmp_path / "missing.json"
    with pytest.raises(UserError, match="does not exist") as info:
        resnet18.resolve(str(missing))
    assert str(missing) in str(info.value)


def test_binary_placement_file(resnet18, tmp_path):
    path = tmp_path / "p.json"
    path.write_bytes(b"\xff\xfe{")
    with pytest.raises(UserError) as info:
        resnet18.resolve(str(path))
    assert str(path) in str(info.value)


def test_placement_errors_in_other_spaces():
    inception = load_space("inception")
    # kt on a 2d position of the untied Inception space, as a token (one per group = position)
    with pytest.raises(UserError, match="no temporal kernel"):
        inception.resolve("2d:7 " + " ".join(["2d"] * 10))
    with pytest.raises(UserError) as info:
        inception.resolve("nosuch")
    for name in ("i3d", "s3d", "s3d_g", "all_3d"):
        assert name in str(info.value)


# -- every shipped space -------------------------------------------------------------------

SHIPPED = list_spaces()


@pytest.fixture(scope="module")
def spaces():
    return {name: load_space(name) for name in SHIPPED}


def test_expected_spaces_are_shipped():
    assert set(EXPECTED_GROUPS) <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_space_loads(spaces, name):
    space = spaces[name]
    assert space.name == name
    assert space.path is not None and space.path.name == f"{name}.toml"
    assert space.size >= 1
    if name in EXPECTED_GROUPS:
        assert len(space.groups) == EXPECTED_GROUPS[name]
    # every position is in exactly one group, groups in network order
    flat = [p for g in space.groups for p in g.positions]
    assert sorted(flat) == sorted(space.position_names)
    assert len(flat) == len(set(flat))


@pytest.mark.parametrize("name", SHIPPED)
def test_generated_named_placements(spaces, name):
    space = spaces[name]
    n = len(space.groups)
    for required in ("all_2d", "all_3d", "all_sep"):
        assert required in space.named, required
    for k in range(n + 1):
        assert f"bottom_heavy_{k}" in space.named
        assert f"top_heavy_{k}" in space.named
    assert f"bottom_heavy_{n + 1}" not in space.named
    assert f"top_heavy_{n + 1}" not in space.named


@pytest.mark.parametrize("name", SHIPPED)
def test_generated_placements_are_in_space(spaces, name):
    space = spaces[name]
    costs = space.costs(frames=8, size=32)  # the tables that `families` reads
    for pname, named in space.named.items():
        if pname.startswith(("all_", "bottom_heavy_", "top_heavy_")):
            assert named.in_space, pname
            assert costs.index(named.placement) < space.size, pname


def test_generated_placements_are_in_space_with_kt_override(tmp_path):
    space = load_space(write(tmp_path, variant(('family_kind = "3d"', 'family_kind = "3d"\nkt = [5]'))))
    assert space.size == 3**5
    costs = space.costs()
    for pname in ("all_3d", "all_sep", "bottom_heavy_1", "top_heavy_0"):
        named = space.named[pname]
        assert named.in_space, pname
        costs.cost(named.placement)


@pytest.mark.parametrize("name", SHIPPED)
def test_family_endpoints(spaces, name):
    space = spaces[name]
    n = len(space.groups)
    p = {k: v.placement for k, v in space.named.items()}
    assert space.family_kind == "3d"
    assert p["bottom_heavy_0"] == p["all_2d"] == p[f"top_heavy_{n}"]
    assert p[f"bottom_heavy_{n}"] == p["all_3d"] == p["top_heavy_0"]


@pytest.mark.parametrize("name", SHIPPED)
def test_family_places_temporal_kind_by_group(spaces, name):
    """bottom_heavy_K: the family kind (at each position's default kt) exactly at the first K
    groups; top_heavy_K: exactly after them."""
    space = spaces[name]
    kind = space.family_kind
    default_kt = {p.name: p.default_kt for p in space.positions}
    n = len(space.groups)
    for k in range(n + 1):
        first = {pos for g in space.groups[:k] for pos in g.positions}
        bottom = space.named[f"bottom_heavy_{k}"].placement
        top = space.named[f"top_heavy_{k}"].placement
        assert list(bottom.positions) == list(top.positions) == space.position_names
        for pos in space.position_names:
            temporal = Choice(kind, default_kt[pos])
            assert bottom[pos] == (temporal if pos in first else Choice("2d")), (k, pos)
            assert top[pos] == (Choice("2d") if pos in first else temporal), (k, pos)
        # K counts groups, so the number of temporal positions grows with the group sizes
        assert sum(c.temporal for _, c in bottom.choices) == len(first)


@pytest.mark.parametrize(("name", "published"), sorted(PUBLISHED.items()))
def test_published_names_exist(spaces, name, published):
    for pname in published:
        assert pname in spaces[name].named, pname
        assert spaces[name].named[pname].description


def test_published_placements_match_their_definitions(spaces):
    r18, r34, inc = spaces["resnet18"], spaces["resnet34"], spaces["inception"]

    def p(space, name):
        return space.named[name].placement

    # Tran et al. 2018: R2D / R3D / R(2+1)D are uniform; MC3 is 3D in the stem and layer1
    # (3 blocks of ResNet-18, 2 stages of ResNet-34) and 2D after, rMC3 the reverse.
    assert p(r18, "r2d") == p(r18, "all_2d")
    assert p(r18, "r3d") == p(r18, "all_3d")
    assert p(r18, "r2plus1d") == p(r18, "all_2plus1d")
    assert p(r18, "mc3") == p(r18, "bottom_heavy_3")
    assert p(r18, "rmc3") == p(r18, "top_heavy_3")
    assert p(r34, "mc3") == p(r34, "bottom_heavy_2")
    assert p(r34, "rmc3") == p(r34, "top_heavy_2")
    # S3D: separable everywhere with the 7-frame first conv; I3D: 3D everywhere, 7-frame first conv
    assert p(inc, "s3d") == p(inc, "all_sep")
    assert p(inc, "s3d")["conv1"] == Choice("sep", 7)
    assert p(inc, "i3d").choices == p(inc, "all_3d").choices
    assert p(inc, "i3d")["conv1"] == Choice("3d", 7)
    # S3D-G: full 3x7x7 first conv (3 frames), separable after
    assert p(inc, "s3d_g")["conv1"] == Choice("3d", 3)
    assert all(c.op == "sep" for n, c in p(inc, "s3d_g").choices if n != "conv1")
    # published models that need backbone overrides are flagged as outside the searched space
    assert not inc.named["i3d"].in_space
    assert inc.named["s3d"].in_space


@pytest.mark.parametrize("name", SHIPPED)
def test_size_is_product_of_choices_per_group(spaces, name):
    space = spaces[name]
    info = space.describe()  # what `space show --json` prints
    by_group: dict[str, list[list[str]]] = {}
    for pos in info["positions"]:
        by_group.setdefault(pos["group"], []).append(pos["choices"])
    for choices in by_group.values():
        assert all(c == choices[0] for c in choices)  # tied positions offer the same
        assert len(set(choices[0])) == len(choices[0])
    expected = math.prod(len(choices[0]) for choices in by_group.values())
    assert space.size == expected == info["size"]
    assert len(by_group) == len(space.groups) == len(info["groups"])


def test_shipped_space_sizes_from_first_principles(spaces):
    # 4 ops per decision; Inception's conv1 offers 2d plus 3 temporal kinds x kt in {7, 3}
    assert spaces["resnet18"].size == 4**9
    assert spaces["resnet34"].size == 4**5
    assert spaces["tiny"].size == 4**5
    assert spaces["inception"].size == 7 * 4**10


@pytest.mark.parametrize("name", SHIPPED)
def test_placement_json_round_trip(spaces, name, tmp_path):
    space = spaces[name]
    for pname, named in space.named.items():
        p = named.placement
        text = p.to_json()
        assert json.loads(text) == p.to_dict()
        assert json.loads(text)["space"] == name
        assert Placement.from_json(text) == p, pname
        assert Placement.from_json(p.to_json(indent=2)) == p, pname
        assert space.resolve(text) == p, pname
        assert space.resolve(pname) == p, pname
        path = tmp_path / f"{pname}.json"
        path.write_text(p.to_json(indent=2))
        assert space.resolve(str(path)) == p, pname
        if not p.backbone:  # tokens, one per group, spell placements without backbone overrides
            assert space.resolve(space.placement_string(p)) == p, pname


def test_ties_across_positions_with_different_default_kt(tmp_path):
    """A group's token '3d' means each position's own default kt (conv1: 7, conv2c: 3)."""
    path = tmp_path / "stage.toml"
    path.write_text(
        'schema_version = 1\nname = "stage"\nbackbone = "inception"\ntie = "stage"\nchoices = ["2d", "3d"]\n'
    )
    space = load_space(path)
    p = space.resolve("all_3d")
    assert p["conv1"] == Choice("3d", 7) and p["conv2c"] == Choice("3d", 3)
    assert space.resolve("3d 3d 3d 3d") == p
    # and it can be built and measured, through the tables too
    assert space.costs(frames=8, size=32).cost(p)[0] == space.cost(p, frames=8, size=32).macs


def test_backbone_overrides_may_not_change_the_positions():
    space = load_space("tiny")
    d = space.resolve("all_2d").to_dict()
    d["backbone"] = {"layers": [2, 1, 1, 1]}
    with pytest.raises(UserError, match="change the positions"):
        space.resolve(json.dumps(d))


def test_resnet_without_stages_is_refused(tmp_path):
    path = tmp_path / "empty.toml"
    path.write_text(
        'schema_version = 1\nname = "e"\nbackbone = "resnet"\n[backbone_args]\nlayers = []\nwidths = []\nstage_strides = []\n'
    )
    with pytest.raises(UserError, match="at least one stage"):
        load_space(path)


def test_unreadable_space_file_is_a_user_error(tmp_path):
    folder = tmp_path / "dir.toml"  # a folder named like a space file
    folder.mkdir()
    with pytest.raises(UserError, match="not a file"):
        load_space(folder)
