"""The driver's book: which runs' weights are worth keeping is judged on the placement's mean,
the number ``pareto`` reports, not on the run's own (lucky or unlucky) accuracy."""

from __future__ import annotations

from placement_search.study.book import Book


def _run(book: Book, key: str, acc: float, macs: float, seed: int, *, steps: int = 80, broke: bool = False) -> None:
    outcome = {
        "number": book.counted,
        "state": None,
        "values": [acc, macs],
        "status": "ok",
        "user_attrs": {"budget_steps": steps, "trainer_seed": seed},
        "system_attrs": {"constraints:max_latency_ms": 0.5} if broke else {},
    }
    book.record("ok", key, outcome)


def test_a_lucky_repeat_of_a_dominated_placement_is_not_on_the_front():
    book = Book(["maximize", "minimize"], base_steps=80)
    _run(book, "A", 0.90, 100, 0)
    _run(book, "B", 0.80, 100, 0)
    # B's second seed scores 0.95: the run alone beats A, but B's mean (0.875) does not
    assert not book.on_estimate_front("B", 80, [0.95, 100])


def test_an_unlucky_repeat_of_the_best_placement_stays_on_the_front():
    book = Book(["maximize", "minimize"], base_steps=80)
    _run(book, "A", 0.90, 100, 0)
    _run(book, "B", 0.75, 100, 0)
    # A's second seed scores 0.70: the run alone is beaten by A's first run and by nothing else
    # that counts; A's mean (0.80) still beats B
    assert book.on_estimate_front("A", 80, [0.70, 100])
    _run(book, "A", 0.70, 100, 1)
    # a third seed of 0.60 takes A's mean to 0.733 < 0.75: off the front
    assert not book.on_estimate_front("A", 80, [0.60, 100])


def test_the_highest_budget_decides_and_broken_constraints_do_not_count():
    book = Book(["maximize", "minimize"], base_steps=80)
    _run(book, "A", 0.60, 100, 0)
    _run(book, "B", 0.90, 100, 0, broke=True)  # over a latency budget: not a result
    _run(book, "C", 0.65, 100, 0)
    # A promoted to 400 steps reaches 0.62: judged at 400 steps, where it is alone (C's 0.65
    # is an 80-step score: not comparable)
    assert book.on_estimate_front("A", 400, [0.62, 100])
    _run(book, "E", 0.70, 100, 0, steps=400)
    assert not book.on_estimate_front("A", 400, [0.62, 100])  # E at 400 steps dominates it
    # at 80 steps a second seed of 0.50 makes A's mean 0.55 < C's 0.65
    assert not book.on_estimate_front("A", 80, [0.50, 100])
    # a new placement, cheaper than all: on the front whatever its accuracy
    assert book.on_estimate_front("D", 80, [0.10, 50])
