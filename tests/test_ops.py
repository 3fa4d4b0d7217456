"""The op registry: every kind builds, has the shapes and widths its paper defines."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from placement_search import OP_KINDS, UserError, build_op
from placement_search.ops import tran_mid_channels


def convs(m: nn.Module) -> list[nn.Conv3d]:
    return [c for c in m.modules() if isinstance(c, nn.Conv3d)]


def test_registry_has_the_four_kinds():
    assert set(OP_KINDS) == {"2d", "3d", "sep", "2plus1d"}


def test_unknown_kind_names_the_known_ones():
    with pytest.raises(UserError) as e:
        build_op("4d", 8, 8, kernel=(3, 3, 3))
    for kind in OP_KINDS:
        assert repr(kind) in str(e.value)


@pytest.mark.parametrize("kt", [0, 2, -1])
def test_even_or_nonpositive_temporal_kernel_is_rejected(kt):
    with pytest.raises(UserError, match="odd"):
        build_op("3d", 8, 8, kernel=(kt, 3, 3))


@pytest.mark.parametrize("kind", sorted(OP_KINDS))
@pytest.mark.parametrize("stride", [(1, 1, 1), (1, 2, 2), (2, 2, 2)])
def test_every_kind_keeps_same_padding_and_applies_stride(kind, stride):
    op = build_op(kind, 4, 6, kernel=(3, 3, 3), stride=stride)
    y = op(torch.randn(2, 4, 8, 10, 10))
    assert y.shape == (2, 6, 8 // stride[0], 10 // stride[1], 10 // stride[2])


def test_kernel_shapes_follow_the_definitions():
    k2 = convs(build_op("2d", 4, 6, kernel=(5, 3, 3)))
    assert [c.kernel_size for c in k2] == [(1, 3, 3)]
    k3 = convs(build_op("3d", 4, 6, kernel=(5, 3, 3)))
    assert [c.kernel_size for c in k3] == [(5, 3, 3)]
    for kind in ("sep", "2plus1d"):
        ks = convs(build_op(kind, 4, 6, kernel=(5, 3, 3), stride=(2, 2, 2)))
        assert [c.kernel_size for c in ks] == [(1, 3, 3), (5, 1, 1)]
        # spatial stride on the spatial conv, temporal stride on the temporal conv
        assert [c.stride for c in ks] == [(1, 2, 2), (2, 1, 1)]


def test_sep_middle_width_is_the_output_width():
    c = convs(build_op("sep", 16, 48, kernel=(3, 3, 3)))
    assert c[0].out_channels == 48 and c[1].in_channels == 48


def test_2plus1d_middle_width_matches_tran_et_al():
    # Tran et al. 2018, Sec. 3.5: M = floor(t d^2 N_{i-1} N_i / (d^2 N_{i-1} + t N_i)).
    # For 64 -> 64 with 3x3x3 kernels: 27 * 4096 / (576 + 192) = 144.
    assert tran_mid_channels(64, 64, 3, 3) == 144
    c = convs(build_op("2plus1d", 64, 64, kernel=(3, 3, 3)))
    assert c[0].out_channels == 144
    # ...so that its conv weights match a full 3D conv's (up to the floor)
    full = 64 * 64 * 27
    factored = sum(x.weight.numel() for x in c)
    assert full - 64 * 9 - 64 * 3 < factored <= full


def test_explicit_middle_width_and_bias():
    c = convs(build_op("2plus1d", 3, 64, kernel=(3, 7, 7), mid_channels=45, bias=True))
    assert c[0].out_channels == 45 and c[0].bias is None and c[1].bias is not None


@pytest.mark.parametrize("kind", sorted(OP_KINDS))
def test_factorised_kinds_have_inner_norm_and_activation(kind):
    op = build_op(kind, 4, 6, kernel=(3, 3, 3))
    norms = [m for m in op.modules() if isinstance(m, nn.BatchNorm3d)]
    assert len(norms) == (1 if kind in ("sep", "2plus1d") else 0)


def test_op_kinds_carry_their_label_and_whether_they_are_temporal():
    from placement_search.ops import OP_INFO, OP_KINDS, TEMPORAL_KINDS, is_temporal, op_label, register_op

    assert [op_label(k) for k in ("2d", "3d", "sep", "2plus1d")] == ["2D", "3D", "separable", "R(2+1)D"]
    assert {k for k in OP_KINDS if is_temporal(k)} == set(TEMPORAL_KINDS)

    @register_op("shift_test", label="temporal shift", temporal=True)
    def _shift(*args, **kwargs):  # pragma: no cover - never built
        raise AssertionError

    try:
        # figures derive their kinds from the registry: a new kind gets a heatmap column with its label
        import optuna

        from placement_search.inspect.figures import heatmap_data

        study = optuna.create_study(directions=["maximize", "minimize"])
        study.set_user_attr("groups", ["stem"])
        study.add_trial(
            optuna.trial.create_trial(
                params={"stem": "shift_test"},
                distributions={"stem": optuna.distributions.CategoricalDistribution(("2d", "shift_test"))},
                values=[0.9, 1.0],
                user_attrs={"status": "ok"},
            )
        )
        data = heatmap_data(study)
        assert "shift_test" in data["kinds"] and op_label("shift_test") == "temporal shift"
        assert data["counts"][0][data["kinds"].index("shift_test")] == 1
    finally:
        del OP_KINDS["shift_test"], OP_INFO["shift_test"]
