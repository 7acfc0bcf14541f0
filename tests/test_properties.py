"""Property-based tests (hypothesis): invariances and equivariances the likelihood, the fits and the losses must
have, checked on drawn parameters and data rather than on a few hand-picked cases.

Examples are derandomized (the same draws on every run) and few: each property costs a fit or a likelihood
evaluation, and the whole file stays within about a minute on two cores.
"""
import warnings

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import moestat as ms
from moestat.fitting import em
from moestat.data.design import make_data
from moestat.experts.gaussian import GaussianParams
from moestat.gating.softmax import SoftmaxParams
from moestat.losses import theory_loss
from moestat.montecarlo.adapters import model_atoms
from moestat.montecarlo.setup import ModelSetup
from references.numpy_em import loglik_and_resp

from conftest import simulate_softmax_gaussian

FEW = settings(max_examples=12, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
FITS = settings(max_examples=5, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))

finite = st.floats(-3.0, 3.0, allow_nan=False, allow_infinity=False)


@st.composite
def softmax_gaussian(draw):
    """(params as arrays, X (n, p) with intercept, y (n,), w (n,)) of a softmax-gated Gaussian MoE."""
    k = draw(st.integers(2, 4))
    d = draw(st.integers(1, 2))
    n = draw(st.integers(5, 120))
    seed = draw(st.integers(0, 2 ** 31 - 1))
    rng = np.random.default_rng(seed)
    gate = np.vstack([np.zeros(d + 1), rng.normal(0, 2, (k - 1, d + 1))])
    coef = rng.normal(0, 3, (k, d + 1))
    sigma2 = np.exp(rng.uniform(-3, 2, k))
    X = np.column_stack([np.ones(n), rng.normal(0, 1.5, (n, d))])
    y = rng.normal(0, 4, n)
    w = rng.integers(0, 4, n).astype(float)
    w[0] = 1.0
    return gate, coef, sigma2, X, y, w


def jax_loglik(gate, coef, sigma2, X, y, w):
    """The kernels' weighted log-likelihood at the given parameters."""
    k = coef.shape[0]
    cfg = ms.GaussianMoE(k).config()
    params = em.MoEParams(gate=SoftmaxParams(coef=gate),
                          expert=GaussianParams(coef=coef, sigma2=sigma2))
    return float(em.loglik(params, make_data(X, X, y, w), cfg))


@FEW
@given(softmax_gaussian(), st.randoms(use_true_random=False), st.lists(finite, min_size=3, max_size=3))
def test_loglik_invariant_to_expert_order_and_gate_translation(case, rnd, shift):
    gate, coef, sigma2, X, y, w = case
    k, p = coef.shape
    reference, _ = loglik_and_resp(gate, coef, sigma2, X, X, y, w)   # the independent NumPy transcription
    base = jax_loglik(gate, coef, sigma2, X, y, w)
    perm = list(range(k))
    rnd.shuffle(perm)
    t = np.asarray(shift[:p])
    moved = jax_loglik(gate[perm] + t, coef[perm], sigma2[perm], X, y, w)
    assert base == pytest.approx(reference, rel=1e-12, abs=1e-9)
    assert moved == pytest.approx(base, rel=1e-12, abs=1e-9)


SETUP = ModelSetup.from_spec({"gate": "softmax", "expert": "linear", "k": 2})


def atoms_of(gate, coef, sigma2):
    params = em.MoEParams(gate=SoftmaxParams(coef=np.asarray(gate)),
                          expert=GaussianParams(coef=np.asarray(coef), sigma2=np.asarray(sigma2)))
    return model_atoms(SETUP, params)


TRUE = atoms_of([[0.0, 0.0], [-8.0, 25.0]], [[15.0, -20.0], [-5.0, 20.0]], [0.09, 0.16])


@FEW
@given(st.integers(2, 4), st.integers(0, 2 ** 31 - 1), st.randoms(use_true_random=False), finite, finite,
       st.sampled_from(["D1", "D2"]))
def test_voronoi_losses_invariant_to_expert_order_and_gate_translation(k, seed, rnd, t0, t1, kind):
    if kind == "D1":
        k = 2   # D_1 is the exact-fitted loss
    rng = np.random.default_rng(seed)
    src = rng.integers(0, 2, k)
    src[:2] = [0, 1]
    gate = np.array([[0.0, 0.0], [-8.0, 25.0]])[src] + rng.normal(0, 0.5, (k, 2))
    coef = np.array([[15.0, -20.0], [-5.0, 20.0]])[src] + rng.normal(0, 0.5, (k, 2))
    sigma2 = np.array([0.09, 0.16])[src] * np.exp(rng.normal(0, 0.2, k))
    perm = list(range(k))
    rnd.shuffle(perm)
    v0 = theory_loss(kind, atoms_of(gate, coef, sigma2), TRUE).value
    v1 = theory_loss(kind, atoms_of(gate[perm] + [t0, t1], coef[perm], sigma2[perm]), TRUE).value
    assert v0 > 0
    assert v1 == pytest.approx(v0, rel=1e-8, abs=1e-12)


def two_experts(n, seed):
    x, y, _ = simulate_softmax_gaussian(n, gate=[[0.0, 0.0], [0.5, 3.0]], coef=[[1.0, 2.0], [-2.0, -3.0]],
                                        sigma=[0.5, 0.7], seed=seed)
    return x[:, 0], y


def fit(x, y, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ms.MoEWarning)
        return ms.GaussianMoE(2).fit(x, y, **dict({"n_init": 3, "seed": 0}, **kw))


@FITS
@given(st.floats(1e-3, 1e3), st.integers(0, 1000))
def test_scaling_y_moves_loglik_by_n_log_c_and_scales_sigma(c, seed):
    x, y = two_experts(200, seed)
    a, b = fit(x, y), fit(x, c * y)
    assert b.loglik == pytest.approx(a.loglik - 200 * np.log(c), rel=1e-8, abs=1e-7)
    sa, sb = np.sqrt(a.params_tree.expert.sigma2), np.sqrt(b.params_tree.expert.sigma2)
    assert np.sort(sb) == pytest.approx(c * np.sort(sa), rel=1e-5)
    assert np.sort(b.params_tree.expert.coef[:, 1]) == pytest.approx(c * np.sort(a.params_tree.expert.coef[:, 1]), rel=1e-5)


@FITS
@given(st.floats(0.01, 100.0), st.booleans(), st.floats(-50.0, 50.0), st.integers(0, 1000))
def test_affine_change_of_x_leaves_the_fitted_loglik_unchanged(scale, flip, shift, seed):
    x, y = two_experts(200, seed)
    a = fit(x, y)
    b = fit((-scale if flip else scale) * x + shift, y)
    assert b.loglik == pytest.approx(a.loglik, rel=1e-8)
    assert np.sort(b.params_tree.expert.sigma2) == pytest.approx(np.sort(a.params_tree.expert.sigma2), rel=1e-5)


@FITS
@given(st.lists(st.integers(0, 3), min_size=120, max_size=120), st.integers(0, 1000))
def test_integer_weights_equal_duplicated_rows(counts, seed):
    x, y = two_experts(120, seed)
    w = np.asarray(counts, dtype=float)
    assume(np.count_nonzero(w) >= 40)   # enough distinct rows for two experts
    start = ms.MoEParams(gate=SoftmaxParams(coef=np.array([[0.0, 0.0], [0.5, 3.0]])),
                         expert=GaussianParams(coef=np.array([[1.0, 2.0], [-2.0, -3.0]]),
                                                                   sigma2=np.array([0.25, 0.5])))
    weighted = fit(x, y, weights=w, init=start)
    rows = np.repeat(np.arange(120), w.astype(int))
    duplicated = fit(x[rows], y[rows], init=start)
    assert weighted.nobs == duplicated.nobs == w.sum()
    assert weighted.loglik == pytest.approx(duplicated.loglik, rel=1e-10)
    for a, b in zip(jax.tree_util.tree_leaves(weighted.params_tree), jax.tree_util.tree_leaves(duplicated.params_tree)):
        assert np.asarray(a) == pytest.approx(np.asarray(b), rel=1e-6, abs=1e-8)
    assert weighted.bse.to_numpy() == pytest.approx(duplicated.bse.to_numpy(), rel=1e-5)


@FITS
@given(st.integers(0, 2 ** 31 - 1), st.integers(30, 150))
def test_same_seed_gives_bit_identical_fits(seed, n):
    x, y = two_experts(n, seed % 1000)
    a, b = fit(x, y, seed=seed), fit(x, y, seed=seed)
    assert a.loglik == b.loglik and a.n_iter == b.n_iter
    for u, v in zip(jax.tree_util.tree_leaves(a.params_tree), jax.tree_util.tree_leaves(b.params_tree)):
        assert np.array_equal(np.asarray(u), np.asarray(v))
    assert a.restarts.equals(b.restarts)


@pytest.fixture(scope="module")
def pool():
    from moestat.montecarlo.executors import LocalPool
    p = LocalPool(1)
    yield p
    p.close()


@pytest.mark.slow
def test_harness_replicates_bit_identical_in_process_and_in_a_pool(pool):
    """Drawn (n, replicate) tasks give the same stored row in this process and in a spawned worker."""
    from moestat.montecarlo.executors import InProcess
    from moestat.montecarlo.store import VOLATILE
    from test_montecarlo import tiny_spec
    spec = tiny_spec()

    @settings(max_examples=3, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(st.integers(100, 400), st.integers(0, 10 ** 6))
    def check(n, rep):
        from moestat.montecarlo.worker import run_task
        task = {"spec": spec.raw, "n": n, "reps": [rep]}
        (_, here), = InProcess().imap_unordered(run_task, [task])
        (_, there), = pool.imap_unordered(run_task, [task])
        strip = lambda rows: [{k: v for k, v in r.items() if k not in VOLATILE} for r in rows]  # noqa: E731
        assert repr(strip(here)) == repr(strip(there))

    check()
