"""The sum tree behind prioritized replay: sums, searches and draws (pure unit tests)."""

from __future__ import annotations

import numpy as np
import pytest

from borg_game.sum_tree import SumTree
from tests.goodness_of_fit import chi_square_p_value


def test_total_and_priorities_follow_updates_across_levels() -> None:
    tree = SumTree(capacity=40, fanout=3)  # 4 levels of 3-wide rows
    assert len(tree.levels) == 4
    tree.update(np.arange(40), np.arange(40, dtype=np.float64))
    assert tree.total == pytest.approx(sum(range(40)))
    tree.update(np.array([5, 39]), np.array([0.5, 100.0]))
    assert tree.total == pytest.approx(sum(range(40)) - 5 + 0.5 - 39 + 100)
    assert tree.priorities(np.array([5, 39, 6])).tolist() == [0.5, 100.0, 6.0]


def test_find_maps_each_mass_to_the_slot_whose_interval_holds_it() -> None:
    tree = SumTree(capacity=5, fanout=2)
    tree.update(np.arange(5), np.array([1.0, 0.0, 2.0, 3.0, 4.0]))  # prefix sums 0, 1, 1, 3, 6, 10
    masses = np.array([0.0, 0.999, 1.0, 2.999, 3.0, 5.999, 6.0, 9.999])
    assert tree.find(masses).tolist() == [0, 0, 2, 2, 3, 3, 4, 4]


def test_masses_at_or_past_the_total_still_land_on_a_slot_with_priority() -> None:
    tree = SumTree(capacity=70, fanout=4)
    tree.update(np.arange(3), np.array([0.1, 0.2, 0.3]))  # slots 3..69 stay empty
    found = tree.find(np.array([tree.total, tree.total * (1 + 1e-12), np.nextafter(tree.total, 0.0)]))
    assert found.tolist() == [2, 2, 2]


def test_slots_of_zero_priority_are_never_drawn() -> None:
    tree = SumTree(capacity=100)
    priorities = np.zeros(100)
    priorities[::7] = 1.0
    tree.update(np.arange(100), priorities)
    drawn = tree.find(np.random.default_rng(0).random(20_000) * tree.total)
    assert set(drawn.tolist()) <= set(range(0, 100, 7))


def test_masses_on_the_boundaries_of_zero_priority_slots_never_land_on_them() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        tree = SumTree(capacity=4096, fanout=4)
        priorities = rng.random(4096) * 10 ** rng.uniform(-3, 3, 4096)
        priorities[::4] = 0.0  # the first child of every row is empty: where rounding would fall
        tree.update(np.arange(4096), priorities)
        boundaries = np.cumsum(priorities)
        masses = np.concatenate([boundaries, np.nextafter(boundaries, 0.0), np.nextafter(boundaries, np.inf)])
        drawn = tree.find(masses[masses < tree.total])
        assert np.all(priorities[drawn] > 0.0)


@pytest.mark.parametrize("fanout", [2, 3, 32])
def test_independent_draws_follow_the_priorities(fanout: int) -> None:
    tree = SumTree(capacity=50, fanout=fanout)
    priorities = np.arange(1, 51, dtype=np.float64) ** 1.5
    tree.update(np.arange(50), priorities)
    rng = np.random.default_rng(7)
    drawn = tree.find(rng.random(100_000) * tree.total)
    counts = np.bincount(drawn, minlength=50)
    # The seed is fixed, so this cannot flake; a biased search fails it by a wide margin.
    assert chi_square_p_value(counts, priorities / priorities.sum()) > 0.001


def test_stratified_draws_follow_the_priorities_and_cover_every_stratum() -> None:
    tree = SumTree(capacity=1_100)  # three levels at fanout 32
    rng = np.random.default_rng(3)
    priorities = rng.gamma(0.5, size=1_100) + 1e-3
    tree.update(np.arange(1_100), priorities)
    interval_ends = np.cumsum(priorities)
    interval_starts = interval_ends - priorities
    stratum_starts = np.arange(64) * (tree.total / 64)
    slack = 1e-9 * tree.total  # the tree's sums and numpy's cumsum round differently
    counts = np.zeros(1_100, dtype=np.int64)
    for _ in range(2_000):
        drawn = tree.sample_stratified(64, rng)
        # Draw k lies in the k-th of 64 equal strata: its slot's interval reaches into it.
        assert np.all(interval_starts[drawn] < stratum_starts + tree.total / 64 + slack)
        assert np.all(interval_ends[drawn] > stratum_starts - slack)
        counts += np.bincount(drawn, minlength=1_100)
    assert chi_square_p_value(counts, priorities / priorities.sum()) > 0.001


def test_inner_sums_do_not_drift_over_many_updates() -> None:
    tree = SumTree(capacity=10_000)
    rng = np.random.default_rng(1)
    for _ in range(2_000):
        tree.update(rng.integers(0, 10_000, size=32), rng.random(32) * 10 ** rng.uniform(-6, 3))
    leaves = tree.levels[0].reshape(-1)[:10_000]
    assert tree.total == pytest.approx(float(leaves.sum()), rel=1e-12)
    for below, level in zip(tree.levels, tree.levels[1:], strict=False):
        row_sums = below.sum(axis=1)
        assert np.allclose(level.reshape(-1)[: len(row_sums)], row_sums, rtol=1e-12, atol=0.0)


def test_one_large_update_equals_many_small_ones() -> None:
    rng = np.random.default_rng(2)
    priorities = rng.random(5_000)
    at_once, in_pieces = SumTree(5_000), SumTree(5_000)
    at_once.update(np.arange(5_000), priorities)
    for start in range(0, 5_000, 16):
        in_pieces.update(np.arange(start, min(start + 16, 5_000)), priorities[start : start + 16])
    for ours, theirs in zip(at_once.levels, in_pieces.levels, strict=True):
        assert np.array_equal(ours, theirs)


def test_bad_slots_and_priorities_are_refused() -> None:
    tree = SumTree(capacity=10)
    with pytest.raises(IndexError, match=r"\[0, 10\)"):
        tree.update(np.array([10]), np.array([1.0]))
    with pytest.raises(ValueError, match="non-negative"):
        tree.update(np.array([1]), np.array([-1.0]))
    with pytest.raises(ValueError, match="finite"):
        tree.update(np.array([1]), np.array([np.nan]))
    with pytest.raises(ValueError, match="all zero"):
        tree.sample_stratified(4, np.random.default_rng(0))
