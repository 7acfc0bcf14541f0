"""MultinomialMoE under the modified softmax gate (ICML 2024)."""
from __future__ import annotations

import numpy as np
import pytest

import moestat as ms
from moestat.truths import multinomial_regimes as mr
from references.direct import direct_mle

pytestmark = pytest.mark.slow   # skipped by the fast tier (pytest -m "not slow"); CI runs it

N = 2000


@pytest.fixture(scope="module")
def regime2_tanh():
    """Regime 2 (expert 1 ignores x) with the gate on tanh(x): data, direct MLE from the truth, default fit."""
    x, y, z = mr.simulate_regime(N, regime=2, gating="modified_softmax", transform="tanh", seed=[11, N, 0],
                                  design="d1")
    X = np.column_stack([np.ones(N), x])
    Xg = np.column_stack([np.ones(N), np.tanh(x)])
    ref = direct_mle(X, Xg, y, mr.gate_coefficients("modified_softmax", "tanh", "d1"),
                     mr.expert_coefficients(2, "d1"))
    res = ms.MultinomialMoE(2, gating=ms.gating.ModifiedSoftmax(transform="tanh")).fit(x, y)
    return x, y, ref, res


def test_modified_gate_reaches_direct_mle(regime2_tanh):
    x, y, (ll, G, A), res = regime2_tanh
    assert abs(res.loglik - ll) < 1e-4
    gate, experts = res.params_tree.gate.coef, res.params_tree.expert.coef
    if np.abs(experts[::-1] - A).max() < np.abs(experts - A).max():
        gate, experts = -gate, experts[::-1]
    np.testing.assert_allclose(gate, G, atol=1e-3 * np.abs(G).max())
    np.testing.assert_allclose(experts, A, atol=1e-3 * np.abs(A).max())


def test_modified_gate_monotone_and_predicts_on_transformed_inputs(regime2_tanh):
    x, y, _, res = regime2_tanh
    tr = res.loglik_trace
    assert tr.size > 5 and np.all(np.diff(tr) >= -1e-12 * np.abs(tr[1:]))
    xn = np.linspace(-1, 1, 7)[:, None]
    eta = res.params_tree.gate.coef @ np.vstack([np.ones(7), np.tanh(xn[:, 0])])
    g = np.exp(eta - eta.max(0))
    g /= g.sum(0)
    np.testing.assert_allclose(res.predict(xn, kind="gate"), g.T, atol=1e-12)
    P = res.predict(xn, kind="proba")
    np.testing.assert_allclose(P.sum(1), 1.0, atol=1e-12)
    assert "tanh(x)" in res.params_frame()["term"].tolist()
