"""Placements are data: tokens parse, JSON round-trips exactly, and gives the same model."""

from __future__ import annotations

import json

import pytest
import torch

from placement_search import Choice, Placement, UserError, load_space
from placement_search.placement import PLACEMENT_SCHEMA_VERSION, parse_choice_token


@pytest.mark.parametrize(
    ("token", "default_kt", "expected"),
    [
        ("2d", 3, Choice("2d", 1)),
        ("3d", 7, Choice("3d", 7)),
        ("sep:5", 3, Choice("sep", 5)),
        ("2plus1d:1", 3, Choice("2plus1d", 1)),
    ],
)
def test_tokens(token, default_kt, expected):
    assert parse_choice_token(token, default_kt, "t") == expected


@pytest.mark.parametrize("token", ["4d", "3d:x", "3d:4", "2d:3", "sep:0", ""])
def test_bad_tokens(token):
    with pytest.raises(UserError):
        parse_choice_token(token, 3, "t")


def test_choice_token_omits_default_kt():
    assert Choice("3d", 7).token(7) == "3d" and Choice("3d", 3).token(7) == "3d:3" and Choice("2d").token(3) == "2d"


@pytest.mark.parametrize(("space_name", "name"), [("resnet18", "mc3"), ("inception", "s3d_g"), ("tiny", "top_heavy_2")])
def test_json_round_trip_gives_an_identical_model(space_name, name):
    space = load_space(space_name)
    p = space.resolve(name)
    text = p.to_json()
    q = Placement.from_json(text)
    assert q == p and q.to_json() == text
    assert json.loads(text)["schema_version"] == PLACEMENT_SCHEMA_VERSION

    torch.manual_seed(0)
    a = space.build(p, num_classes=7).eval()
    torch.manual_seed(0)
    b = space.build(space.resolve(text), num_classes=7).eval()
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    x = torch.randn(1, 3, 8, 32, 32)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))


def test_json_carries_backbone_overrides():
    space = load_space("inception")
    p = space.resolve("i3d")
    d = json.loads(p.to_json())
    assert d["backbone"] == {"norm_scale": False, "padding": "tf_same"}
    assert space.resolve(json.dumps(d)) == p


def test_readable_string_round_trips_through_tokens():
    space = load_space("inception")
    for name in ("all_sep", "bottom_heavy_3", "s3d"):
        p = space.resolve(name)
        assert space.resolve(space.placement_string(p)) == Placement(
            p.space, p.choices
        )  # overrides are not in the string


def test_placement_from_a_json_file(tmp_path):
    space = load_space("tiny")
    path = tmp_path / "p.json"
    path.write_text(space.resolve("all_sep").to_json(indent=2))
    assert space.resolve(str(path)) == space.resolve("all_sep")


def test_unknown_schema_version_is_refused():
    space = load_space("tiny")
    d = json.loads(space.resolve("all_2d").to_json())
    d["schema_version"] = 99
    with pytest.raises(UserError, match="schema_version"):
        space.resolve(json.dumps(d))
