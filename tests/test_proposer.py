"""The proposer's answer to a sampler that proposes a placement already evaluated: the nearest
free placement, a decision at a time farther out."""

from __future__ import annotations

import itertools

import pytest

from placement_search.placement import placement_key
from placement_search.space import load_space
from placement_search.study.proposer import Proposer


@pytest.fixture
def tiny():
    space = load_space("tiny")  # 5 groups, 4 op kinds each: 1,024 placements
    groups = {g.name: list(g.tokens) for g in space.groups}
    start = {g: tokens[0] for g, tokens in groups.items()}
    every = [dict(zip(groups, combo)) for combo in itertools.product(*groups.values())]
    return space, groups, start, every


def _key(space, params):
    return placement_key(space.from_group_tokens(params, "test"))


def _repeat(space, start, taken, seed=0):
    """A proposer whose sampler proposes ``start`` while ``taken`` is evaluated: what it queues."""
    p = Proposer(space, "random", {}, ["maximize", "minimize"], seed, [], [])
    p.mirror.enqueue_trial(start)
    mt = p.mirror.ask(p.dists)
    assert p.repeated(mt, {_key(space, q) for q in taken}, origin=7)
    return list(p.neighbours)


@pytest.mark.parametrize("ring", [0, 1, 2, 3])
def test_a_repeat_gets_a_free_placement_one_decision_beyond_the_taken_ones(tiny, ring):
    """Every placement within ``ring`` decisions of the proposal is taken: the proposer queues one
    ``ring + 1`` decisions away (0: the proposal alone is taken, its one-decision neighbours
    are free, as before; 1: all 15 of them taken too, as when GP keeps proposing one placement)."""
    space, groups, start, every = tiny
    taken = [q for q in every if sum(q[g] != start[g] for g in groups) <= ring]
    ((params, origin),) = _repeat(space, start, taken)
    assert origin == 7
    assert sum(params[g] != start[g] for g in groups) == ring + 1
    assert _key(space, params) not in {_key(space, q) for q in taken}


def test_a_repeat_in_an_exhausted_space_queues_nothing(tiny):
    space, _, start, every = tiny
    assert _repeat(space, start, every) == []


def test_a_repeat_finds_the_last_free_placement_however_far(tiny):
    """Every placement but one that differs from the proposal in every decision is taken. The
    tries at each distance are random (20 of them): the one free placement among the 3^5 = 243
    at distance 5 is found with probability 1 - (242/243)^20 = 0.079 a repeat, so over 60 seeds
    some find it (all miss with probability 0.921^60 < 0.01), and none queues anything else."""
    space, groups, start, every = tiny
    last = {g: tokens[-1] for g, tokens in groups.items()}
    taken = [q for q in every if q != last]
    got = [_repeat(space, start, taken, seed) for seed in range(60)]
    assert all(g in ([], [(last, 7)]) for g in got)
    assert sum(g != [] for g in got) >= 1
