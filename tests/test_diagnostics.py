"""Router diagnostics (moestat.diagnostics): hand-computed values, edge cases, ties, bad input."""
from __future__ import annotations

import numpy as np
import pytest

import moestat as ms
from moestat import diagnostics as dg


# ------------------------------------------------------------------ Jain's index and load imbalance

def test_jain_index_hand_values():
    # (1+2+3)^2 / (3 (1+4+9)) = 36 / 42
    assert dg.jain_index([1, 2, 3]) == pytest.approx(36 / 42, rel=1e-15)
    assert dg.jain_index([5, 5, 5, 5]) == 1.0                     # balanced
    assert dg.jain_index([0, 7, 0, 0]) == pytest.approx(0.25)     # all on one expert: 1/k
    assert dg.jain_index([3, 3, 0, 0]) == pytest.approx(0.5)      # empty experts count in k
    assert dg.jain_index([4.2]) == 1.0                            # one expert
    np.testing.assert_allclose(dg.jain_index([[1, 1], [1, 0]]), [1.0, 0.5])   # stacked load vectors
    # scale invariant: shares and counts give the same index
    assert dg.jain_index([0.1, 0.2, 0.3]) == pytest.approx(36 / 42, rel=1e-14)


@pytest.mark.parametrize("loads, msg", [([0, 0], "every load is zero"), ([1, -1], "non-negative"),
                                        ([1, np.nan], "finite"), ([], "non-empty")])
def test_jain_index_errors(loads, msg):
    with pytest.raises(ValueError, match=msg):
        dg.jain_index(loads)


def test_load_imbalance_hand_values():
    # loads (2, 1, 1, 0): max 2 / mean 1
    assert dg.load_imbalance(np.array([0, 0, 1, 2]), 4) == 2.0
    assert dg.load_imbalance(np.array([3, 3, 3]), 4) == 4.0        # all on one expert: k
    assert dg.load_imbalance(np.array([0, 0, 0]), 1) == 1.0        # one expert
    sets = np.array([[1, 1, 0], [1, 0, 1], [1, 1, 0]], dtype=bool)  # loads (3, 2, 1), mean 2
    assert dg.load_imbalance(sets, 3) == 1.5
    with pytest.raises(ValueError, match="labels in 0..1"):
        dg.load_imbalance(np.array([0, 2]), 2)
    with pytest.raises(ValueError, match="empty"):
        dg.load_imbalance(np.array([], dtype=int), 2)
    with pytest.raises(ValueError, match="3 columns but k = 2"):
        dg.load_imbalance(sets, 2)
    with pytest.raises(ValueError, match="positive integer"):
        dg.load_imbalance([0], 0)


# ------------------------------------------------------------------ routing sets, capacity, expert choice

P = np.array([[0.5, 0.3, 0.2],
              [0.1, 0.1, 0.8],
              [0.4, 0.4, 0.2],     # tie between experts 0 and 1
              [0.2, 0.5, 0.3]])


def test_topk_sets_and_tie_rule():
    np.testing.assert_array_equal(dg.topk_assignment(P, 1).astype(int),
                                  [[1, 0, 0], [0, 0, 1], [1, 0, 0], [0, 1, 0]])
    # K = 2, row 1: 0.1 = 0.1 tie -> lower index 0
    np.testing.assert_array_equal(dg.topk_assignment(P, 2).astype(int),
                                  [[1, 1, 0], [1, 0, 1], [1, 1, 0], [0, 1, 1]])
    assert dg.topk_assignment(P, 3).all()
    # the same tie rule as the top-K gate
    import jax.numpy as jnp
    from moestat.gating.topk import topk_mask
    np.testing.assert_array_equal(np.asarray(topk_mask(jnp.asarray(np.log(P).T), 2)).T, dg.topk_assignment(P, 2))
    with pytest.raises(ValueError, match="1 <= top_k <= k = 3"):
        dg.topk_assignment(P, 4)


def test_utilization():
    np.testing.assert_allclose(dg.utilization(P), [1.2 / 4, 1.3 / 4, 1.5 / 4])
    np.testing.assert_allclose(dg.utilization(P, top_k=1), [0.5, 0.25, 0.25])
    np.testing.assert_allclose(dg.utilization(P, top_k=2), [3 / 8, 3 / 8, 2 / 8])


def test_capacity_overflow_hand_values():
    # top-1 winners 0, 2, 0, 1; N = 4, k = 3, c = 1: C = floor(4/3) = 1 -> point 2 (second request of
    # expert 0) is dropped
    share, mask = dg.capacity_overflow(P, 1, 1.0, return_mask=True)
    assert share == 0.25
    np.testing.assert_array_equal(mask, [False, False, True, False])
    assert dg.capacity_overflow(P, 1, 1.5) == 0.0           # C = 2
    # top-2: requests of expert 0 at points 0, 1, 2 and expert 1 at points 0, 2, 3; C = floor(8/3) = 2
    # -> point 2 is refused by expert 0 (3rd) and point 3 by expert 1 (3rd)
    share, mask = dg.capacity_overflow(P, 2, 1.0, return_mask=True)
    assert share == 0.5
    np.testing.assert_array_equal(mask, [False, False, True, True])
    # one expert: every point goes there; C = c N
    one = np.ones((5, 1))
    assert dg.capacity_overflow(one, 1, 1.0) == 0.0
    assert dg.capacity_overflow(one, 1, 0.6) == 0.4          # C = 3 of 5
    # all 8 points on one expert of four, c = 1: C = 2, all but the first two points dropped
    allone = np.tile([0.0, 1.0, 0.0, 0.0], (8, 1))
    assert dg.capacity_overflow(allone, 1, 1.0) == 6 / 8
    with pytest.raises(ValueError, match="capacity_factor must be a positive"):
        dg.capacity_overflow(P, 1, 0.0)


def test_expert_choice_hand_values():
    ec = dg.expert_choice_assignment(P, 2)
    # expert 0 takes points 0 (0.5), 2 (0.4); expert 1 takes 3 (0.5), 2 (0.4); expert 2 takes 1 (0.8), 3 (0.3)
    np.testing.assert_array_equal(ec.assignment.astype(int), [[1, 0, 0], [0, 0, 1], [1, 1, 0], [0, 1, 1]])
    np.testing.assert_array_equal(ec.per_point, [1, 1, 2, 2])
    assert ec.coverage == 1.0 and ec.unrouted == 0
    ec1 = dg.expert_choice_assignment(P, 1)
    np.testing.assert_array_equal(ec1.per_point, [1, 1, 0, 1])   # point 2 unrouted
    assert ec1.coverage == 0.75 and ec1.unrouted == 1
    # ties between points go to the lower point index
    tie = np.full((3, 2), 0.5)
    np.testing.assert_array_equal(dg.expert_choice_assignment(tie, 1).per_point, [2, 0, 0])
    # one expert, all points on one expert
    assert dg.expert_choice_assignment(np.ones((4, 1)), 4).coverage == 1.0
    # all mass on expert 1: both experts take points 0, 1 (expert 0's scores all tie at 0) -> 2 unrouted
    assert dg.expert_choice_assignment(np.tile([0.0, 1.0], (4, 1)), 2).unrouted == 2
    with pytest.raises(ValueError, match="1 <= capacity <= N = 4"):
        dg.expert_choice_assignment(P, 5)
    with pytest.raises(TypeError, match="capacity must be an integer"):
        dg.expert_choice_assignment(P, 1.5)


# ------------------------------------------------------------------ saturation and change rate

def test_saturation_and_change_rate_hand_values():
    E0 = np.array([[1, 1, 0], [1, 0, 1], [0, 1, 1]], dtype=bool)
    E1 = np.array([[1, 1, 0], [0, 1, 1], [0, 1, 1]], dtype=bool)
    ET = np.array([[1, 0, 1], [0, 1, 1], [0, 1, 1]], dtype=bool)
    # |E0 ∩ ET| = 1, 1, 2 -> (1 + 1 + 2) / 3 / 2
    assert dg.saturation(E0, ET) == pytest.approx(4 / 6)
    assert dg.saturation(ET, ET) == 1.0
    # |E1 \ E0| = 0, 1, 0 -> 1 / 3 / 2
    assert dg.change_rate(E0, E1) == pytest.approx(1 / 6)
    assert dg.change_rate(E1, E1) == 0.0
    # a sequence along a leading axis
    seq = np.stack([E0, E1, ET])
    np.testing.assert_allclose(dg.saturation(seq, ET), [4 / 6, 5 / 6, 1.0])
    np.testing.assert_allclose(dg.change_rate(seq[:-1], seq[1:]), [1 / 6, 1 / 6])
    # one expert: K = k = 1, nothing can change
    one = np.ones((4, 1), dtype=bool)
    assert dg.saturation(one, one) == 1.0 and dg.change_rate(one, one) == 0.0
    # top-1 with every point moving from expert 0 to expert 1
    a, b = np.tile([True, False], (5, 1)), np.tile([False, True], (5, 1))
    assert dg.saturation(a, b) == 0.0 and dg.change_rate(a, b) == 1.0


def test_saturation_errors():
    E = np.array([[1, 1, 0]], dtype=bool)
    with pytest.raises(ValueError, match="same K, got 2 and 1"):
        dg.saturation(E, np.array([[1, 0, 0]], dtype=bool))
    with pytest.raises(ValueError, match="same number K >= 1"):
        dg.change_rate(np.array([[1, 1, 0], [1, 0, 0]]), np.array([[1, 1, 0], [1, 1, 0]]))
    with pytest.raises(ValueError, match="boolean"):
        dg.saturation(np.array([[2, 0]]), np.array([[1, 0]]))
    with pytest.raises(ValueError, match="same points and experts"):
        dg.saturation(np.ones((2, 1), bool), np.ones((3, 1), bool))


# ------------------------------------------------------------------ Tsallis entropy

def test_tsallis_entropy_hand_values():
    p = np.array([0.5, 0.25, 0.25])
    assert dg.tsallis_entropy(p, 2.0) == pytest.approx(1 - (0.25 + 0.0625 + 0.0625), rel=1e-15)
    assert dg.tsallis_entropy(p, 3.0) == pytest.approx((1 - (0.125 + 2 * 0.015625)) / 2, rel=1e-15)
    shannon = 0.5 * np.log(2) + 2 * 0.25 * np.log(4)
    assert dg.tsallis_entropy(p, 1.0) == pytest.approx(shannon, rel=1e-15)
    # q -> 1 is continuous (no cancellation): S_q - S_1 = O(q - 1)
    assert dg.tsallis_entropy(p, 1.0 + 1e-9) == pytest.approx(shannon, rel=1e-8)
    assert dg.tsallis_entropy(p, 1.0 - 1e-12) == pytest.approx(shannon, rel=1e-11)
    # one-hot rows (all mass on one expert, zeros elsewhere) have entropy 0; uniform rows the maximum
    rows = np.array([[0.0, 1.0, 0.0], [1 / 3, 1 / 3, 1 / 3]])
    np.testing.assert_allclose(dg.tsallis_entropy(rows, 2.0), [0.0, 2 / 3], atol=1e-15)
    np.testing.assert_allclose(dg.tsallis_entropy(rows, 1.0), [0.0, np.log(3)], atol=1e-15)
    np.testing.assert_allclose(dg.tsallis_entropy(rows, 0.5), [0.0, (1 - 3 ** 0.5) / -0.5], rtol=1e-14)
    assert dg.tsallis_entropy(np.ones((2, 1)), 1.5).tolist() == [0.0, 0.0]     # one expert


@pytest.mark.parametrize("probs, q, msg", [([0.5, 0.6], 1.0, "sum to 1"), ([1.2, -0.2], 1.0, "negative"),
                                           ([0.5, 0.5], 0.0, "q must be a positive"),
                                           ([0.5, 0.5], np.inf, "q must be a positive"),
                                           ([np.nan, 1.0], 1.0, "non-finite")])
def test_tsallis_entropy_errors(probs, q, msg):
    with pytest.raises(ValueError, match=msg):
        dg.tsallis_entropy(probs, q)


def test_module_is_exported():
    assert ms.diagnostics is dg and "diagnostics" in ms.__all__
