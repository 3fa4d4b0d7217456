"""The cost of every placement of a space, without building the placements.

For a fixed clip, a position's cost depends only on its own choice and on the shape of
its input; and that shape depends on earlier choices only through strides (for example
torchvision's rule that a ResNet stage downsamples time only when its first conv is
temporal). So each link of the backbone's cost chain is measured once per (choice,
input shape) it can meet, and the cost of a placement is a walk through these small
tables. Whole spaces are then evaluated as numpy arrays, a million placements at a time:
placement ``i`` is the mixed-radix number whose digits are the groups' choice indices
(first group most significant), so ``placement(i)`` and ``index(placement)`` convert.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from .cost import count_macs, meta_build
from .errors import UserError
from .placement import Placement


class SearchSpace(Protocol):
    """What enumerating needs of a :class:`placement_search.space.SearchSpace` (this module sits
    below ``space/``, which builds :class:`PlacementCosts` in ``SearchSpace.costs``)."""

    name: str
    backbone: Any
    groups: Any
    position_choices: Any

    def from_indices(self, indices: Sequence[int]) -> Placement: ...

    def group_choice_index(self, *args: Any, **kwargs: Any) -> Any: ...


__all__ = ["PlacementCosts"]

#: Spaces larger than this are not enumerated (tie positions into groups to shrink them).
MAX_ENUMERATE = 2_000_000_000
#: Spaces larger than this are not returned as whole arrays by :meth:`PlacementCosts.arrays`.
MAX_ARRAYS = 50_000_000
#: counted links, shared by every PlacementCosts of the process (a driver builds two per study;
#: a benchmark replaying many studies would count the same links again): keyed by the backbone's
#: kind and arguments, the classifier width, the link, its choices and its input shape
_LINK_COUNTS: dict[tuple, tuple[int, int, tuple[int, ...]]] = {}


@dataclass(frozen=True)
class _LinkTable:
    name: str
    groups: tuple[int, ...]  # group index of each of the link's positions
    mults: tuple[int, ...]  # mixed-radix multiplier of each position in the combo index
    macs: np.ndarray  # [state, combo]
    params: np.ndarray  # [state, combo]
    next_state: np.ndarray  # [state, combo]


class PlacementCosts:
    """MACs and params of every placement of ``space`` at one clip size.

    Args:
        space: the search space.
        input_shape: clip tensor shape ``(1, C, T, H, W)``.
        num_classes: classifier width.
    """

    def __init__(self, space: SearchSpace, input_shape: Sequence[int], num_classes: int = 400) -> None:
        self.space = space
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.radix = np.array([len(g.tokens) for g in space.groups], dtype=np.int64)
        self.size = int(np.prod(self.radix, dtype=object))
        self._group_index = {pos: i for i, g in enumerate(space.groups) for pos in g.positions}
        self._tables = self._build_tables()

    def __len__(self) -> int:
        return self.size

    # -- tables -------------------------------------------------------------------------
    def _build_tables(self) -> list[_LinkTable]:
        space = self.space
        cache = _LINK_COUNTS
        backbone = (type(space.backbone).__qualname__, repr(space.backbone.args), self.num_classes)
        states: list[tuple[int, ...]] = [self.input_shape]
        tables = []
        for link in space.backbone.chain(num_classes=self.num_classes):
            radices = [len(space.position_choices[p]) for p in link.positions]
            combos = list(itertools.product(*[range(r) for r in radices]))
            mults = tuple(int(np.prod(radices[i + 1 :], dtype=np.int64)) for i in range(len(radices)))
            groups = tuple(self._group_index[p] for p in link.positions)
            macs = np.zeros((len(states), len(combos)), dtype=np.int64)
            params = np.zeros_like(macs)
            nxt = np.zeros_like(macs)
            out_states: dict[tuple[int, ...], int] = {}
            for si, shape in enumerate(states):
                for ci, combo in enumerate(combos):
                    if any(g == h and a != b for (g, a), (h, b) in itertools.combinations(zip(groups, combo), 2)):
                        continue  # tied positions never differ
                    choices = {p: space.position_choices[p][c] for p, c in zip(link.positions, combo)}
                    key = (backbone, link.name, tuple(sorted(choices.items())), shape)
                    if key not in cache:
                        cache[key] = count_macs(meta_build(link.make, choices), shape)
                    n_params, n_macs, out = cache[key]
                    macs[si, ci], params[si, ci] = n_macs, n_params
                    nxt[si, ci] = out_states.setdefault(out, len(out_states))
            tables.append(_LinkTable(link.name, groups, mults, macs, params, nxt))
            states = list(out_states)
        return tables

    # -- indexing -----------------------------------------------------------------------
    def _digits(self, index: np.ndarray) -> list[np.ndarray]:
        digits = []
        rest = index.astype(np.int64)
        for r in self.radix[::-1]:
            digits.append(rest % r)
            rest = rest // r
        return digits[::-1]

    def placement(self, index: int) -> Placement:
        """The placement with index ``index`` (0 <= index < len(self))."""
        if not 0 <= index < self.size:
            raise IndexError(index)
        return self.space.from_indices([int(d[0]) for d in self._digits(np.array([index]))])

    def index(self, placement: Placement) -> int:
        """Index of an in-space placement."""
        index = 0
        for g, r in zip(self.space.groups, self.radix):
            i = self.space.group_choice_index(placement, g)
            if i is None:
                raise UserError(f"placement is not in space {self.space.name!r} (group {g.name!r})")
            index = index * int(r) + i
        return index

    def evaluate(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(macs, params)`` arrays for an array of placement indices."""
        digits = self._digits(np.asarray(index))
        state = np.zeros(len(index), dtype=np.int64)
        macs = np.zeros(len(index), dtype=np.int64)
        params = np.zeros(len(index), dtype=np.int64)
        for t in self._tables:
            combo = np.zeros(len(index), dtype=np.int64)
            for g, m in zip(t.groups, t.mults):
                combo += digits[g] * m
            macs += t.macs[state, combo]
            params += t.params[state, combo]
            state = t.next_state[state, combo]
        return macs, params

    def cost(self, placement: Placement) -> tuple[int, int]:
        """``(macs, params)`` of one in-space placement, from the tables."""
        macs, params = self.evaluate(np.array([self.index(placement)]))
        return int(macs[0]), int(params[0])

    # -- whole space --------------------------------------------------------------------
    def chunks(self, chunk: int = 1 << 20) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Yield ``(indices, macs, params)`` over every placement, ``chunk`` at a time."""
        if self.size > MAX_ENUMERATE:
            raise UserError(
                f"space {self.space.name!r} has {self.size:,} placements, more than the {MAX_ENUMERATE:,} that "
                'are enumerated; tie positions into groups (tie = "block" or "stage") to shrink it'
            )
        for start in range(0, self.size, chunk):
            idx = np.arange(start, min(start + chunk, self.size), dtype=np.int64)
            macs, params = self.evaluate(idx)
            yield idx, macs, params

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """``(macs, params)`` of every placement, indexed like :meth:`placement`."""
        if self.size > MAX_ARRAYS:
            raise UserError(
                f"space {self.space.name!r} has {self.size:,} placements; whole arrays are limited to "
                f"{MAX_ARRAYS:,} (use chunks() or count_within())"
            )
        return self.evaluate(np.arange(self.size, dtype=np.int64))

    def count_within(self, *, max_macs: int | None = None, max_params: int | None = None) -> int:
        """Number of placements with MACs <= ``max_macs`` and params <= ``max_params``."""
        total = 0
        for _, macs, params in self.chunks():
            ok = np.ones(len(macs), dtype=bool)
            if max_macs is not None:
                ok &= macs <= max_macs
            if max_params is not None:
                ok &= params <= max_params
            total += int(ok.sum())
        return total

    def summary(self) -> dict[str, int]:
        """Smallest and largest MACs and params over the space, with the placements' indices."""
        best = {"min_macs": None, "max_macs": None, "min_params": None, "max_params": None}
        out: dict[str, int] = {}
        for idx, macs, params in self.chunks():
            for key, arr, pick in (
                ("min_macs", macs, np.argmin),
                ("max_macs", macs, np.argmax),
                ("min_params", params, np.argmin),
                ("max_params", params, np.argmax),
            ):
                i = int(pick(arr))
                better = np.less if key.startswith("min") else np.greater
                if best[key] is None or better(arr[i], out[key]):
                    best[key] = True  # type: ignore[assignment]
                    out[key] = int(arr[i])
                    out[key + "_index"] = int(idx[i])
        return out
