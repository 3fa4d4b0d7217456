"""The multi-objective early-stopping rule, on hand-made curves, and on a real proxy run."""

from __future__ import annotations

from placement_search.study.early_stop import Reference, dominators, should_stop
from placement_search.study.worker import run_trial

REF = [
    Reference(0, macs=100, curve={40: 0.50, 80: 0.70}),
    Reference(1, macs=300, curve={40: 0.80, 80: 0.90}),
    Reference(2, macs=50, curve={80: 0.95}),  # no evaluation at step 40
]


def test_dominators_need_lower_or_equal_cost_and_margin():
    # a run of cost 200 at 0.40 after 40 steps: trial 0 (cheaper, 0.50 >= 0.40 + 0.05) dominates,
    # trial 1 is more accurate but costs more, trial 2 has no step-40 evaluation
    assert dominators(40, 0.40, 200, REF, margin=0.05) == [0]
    # margin exactly met counts; just missed does not
    assert dominators(40, 0.45, 200, REF, margin=0.05) == [0]
    assert dominators(40, 0.46, 200, REF, margin=0.05) == []
    # equal cost dominates; the expensive trial 1 only when the run costs as much
    assert dominators(40, 0.40, 300, REF, margin=0.05) == [0, 1]
    assert dominators(80, 0.60, 60, REF, margin=0.05) == [2]


def test_should_stop_waits_for_enough_finished_trials():
    # two references evaluated at step 40: min_trials=3 blocks, 2 allows
    assert should_stop(40, 0.1, 1000, REF, margin=0.0, min_trials=3, min_dominating=1) == []
    assert should_stop(40, 0.1, 1000, REF, margin=0.0, min_trials=2, min_dominating=1) == [0, 1]
    # min_dominating
    assert should_stop(40, 0.1, 200, REF, margin=0.0, min_trials=2, min_dominating=2) == []


def _spec(reference, margin):
    return {
        "space": "tiny",
        "placement": None,
        "data": {"source": "synthetic", "frames": 8, "size": 16, "seed": 0, "difficulty": 0.5, "eval_clips": 22},
        "proxy": {"steps": 6, "batch_size": 8, "warmup_steps": 1, "eval_every": 3, "eval_batch_size": 22, "threads": 1},
        "target": {"frames": 16, "size": 112, "num_classes": 400},
        "macs": 10**9,
        "early_stopping": {"margin": margin, "min_trials": 1, "min_dominating": 1, "reference": reference},
    }


def test_worker_stops_a_dominated_run_at_the_intermediate_evaluation():
    from placement_search.space import load_space

    space = load_space("tiny")
    spec = _spec([{"trial": 7, "macs": 5, "curve": {"3": 1.0}}], 0.0)
    spec["placement"] = space.resolve("all_2d").to_dict()
    events = list(run_trial(spec))
    kinds = [e["event"] for e in events]
    assert kinds == ["started", "eval", "result"]
    assert events[1]["step"] == 3
    final = events[-1]
    # a cheaper trial with accuracy 1.0 at step 3 dominates any run: stopped there
    assert final["result"]["status"] == "stopped" and final["result"]["steps_done"] == 3
    assert final["stopped_by"] == [7]


def test_worker_runs_to_the_end_when_nothing_dominates():
    from placement_search.space import load_space

    space = load_space("tiny")
    # the only reference costs more than this run: it cannot dominate
    spec = _spec([{"trial": 7, "macs": 10**12, "curve": {"3": 1.0}}], 0.0)
    spec["placement"] = space.resolve("all_2d").to_dict()
    final = list(run_trial(spec))[-1]
    assert final["result"]["status"] == "ok" and final["result"]["steps_done"] == 6
    assert final["stopped_by"] == []


def test_compact_reference_decides_the_same():
    import random

    from placement_search.study.early_stop import compact

    rng = random.Random(0)
    for _ in range(200):
        refs = [
            Reference(i, rng.randrange(1, 100), {s: rng.random() for s in (40, 80) if rng.random() < 0.8})
            for i in range(rng.randrange(0, 30))
        ]
        macs, step, acc = rng.randrange(1, 100), rng.choice((40, 80)), rng.random()
        k = rng.randrange(1, 4)
        kw = {"margin": 0.05, "min_trials": rng.randrange(1, 6), "min_dominating": k}
        full = should_stop(step, acc, macs, refs, **kw)
        small, counts = compact(refs, macs, keep=k)
        assert len(small) <= 2 * k  # at most k per evaluated step
        fast = should_stop(step, acc, macs, small, counts=counts, **kw)
        assert bool(fast) == bool(full) and set(fast) <= set(full)
