"""Voronoi losses and density distances (moestat.losses)."""
import math

import numpy as np
import pytest
from scipy.stats import norm

from moestat.losses import (Atoms, VoronoiRule, conditional_distance, rbar, rule_D2, theory_loss,
                            voronoi_loss)

TRUE = dict(b0=[0.0, -8.0], b1=[0.0, 25.0], a=[20.0, -20.0], b=[-5.0, 15.0], s2=[0.16, 0.09])


def softmax_atoms(b0, b1, a, b, s2, gate="softmax"):
    blocks = {"gate_slope": np.asarray(b1, float)[:, None], "slope": np.asarray(a, float)[:, None],
              "intercept": np.asarray(b, float)[:, None], "variance": np.asarray(s2, float)[:, None]}
    return {"moe": Atoms(np.exp(np.asarray(b0, float)), blocks, gate)}


def truth():
    return softmax_atoms(**TRUE)


def test_rbar_values():
    assert list(rbar([1, 2, 3, 4, 5])) == [1.0, 4.0, 6.0, 8.0, 10.0]  # r̄(m) >= 7 for m >= 4 holds


def test_zero_at_truth_and_positive_elsewhere():
    for kind in ("D1", "D2"):
        assert theory_loss(kind, truth(), truth()).value == pytest.approx(0.0, abs=1e-14)
    fit = softmax_atoms([0.0, -7.9], [0.0, 24.8], [20.1, -20.0], [-5.0, 15.05], [0.17, 0.09])
    assert theory_loss("D1", fit, truth()).value > 1e-3


def test_exact_fit_D1_hand_computed_without_shift():
    fit = softmax_atoms([0.0, -7.9], [0.0, 24.8], [20.1, -20.0], [-5.0, 15.05], [0.17, 0.09])
    r = voronoi_loss(fit["moe"], truth()["moe"], VoronoiRule({b: (1, 2) for b in fit["moe"].blocks}),
                     translation=False)
    m1 = math.exp(-7.9)
    expected = abs(1 - 1) + abs(m1 - math.exp(-8)) + 1 * (0.1 + 0.01) + m1 * (0.2 + 0.05)
    assert r.value == pytest.approx(expected, rel=1e-12)


def test_overfitted_D2_hand_computed():
    # two fitted atoms in the cell of true atom 0 (r̄(2) = 4), one in the cell of atom 1
    fit = softmax_atoms(np.log([0.6, 0.5, 2e-4]), [0.1, -0.2, 25.3], [20.2, 19.9, -20.0], [-5.1, -4.8, 15.0],
                        [0.18, 0.15, 0.08])
    t = truth()["moe"]
    r = voronoi_loss(fit["moe"], t, rule_D2(fit["moe"]), translation=False)
    cell0 = 0.6 * (0.1 ** 4 + 0.2 ** 2 + 0.1 ** 4 + 0.02 ** 2) + 0.5 * (0.2 ** 4 + 0.1 ** 2 + 0.2 ** 4 + 0.01 ** 2)
    cell1 = 2e-4 * (0.3 + 0.0 + 0.0 + 0.01)
    mass = abs(1.1 - 1.0) + abs(2e-4 - math.exp(-8))
    assert r.value == pytest.approx(cell0 + cell1 + mass, rel=1e-10)
    assert list(r.cells) == [0, 0, 1]
    assert r.errors["size[0]"] == 2 and r.errors["slope[0]"] == pytest.approx(0.2)


@pytest.mark.parametrize("kind,k", [("D1", 2), ("D2", 3), ("D2", 4)])
def test_translation_invariance(kind, k):
    rng = np.random.default_rng(k)
    base = truth()["moe"]
    idx = np.r_[0, 1, rng.integers(0, 2, size=k - 2)]
    fit = Atoms(base.mass[idx] * np.exp(rng.normal(0, 0.2, k)),
                {b: v[idx] + rng.normal(0, 0.1, v[idx].shape) * (0.1 if b == "variance" else 1.0)
                 for b, v in base.blocks.items()}, "softmax")
    fit.blocks["variance"] = np.abs(fit.blocks["variance"])
    v0 = theory_loss(kind, {"moe": fit}, truth()).value
    for t0, t1 in [(2.3, -11.0), (-5.0, 40.0), (0.7, 0.3)]:
        v = theory_loss(kind, {"moe": fit.shifted(t0, [t1])}, truth()).value
        assert v == pytest.approx(v0, rel=1e-9, abs=1e-13)


@pytest.mark.slow
def test_shifted_fitted_model_same_loss():
    """A real EM fit, written in a non-canonical (shifted) gate parametrisation, has the same loss."""
    import moestat as ms
    from moestat.montecarlo.adapters import model_atoms
    from moestat.montecarlo.setup import ModelSetup
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, 1500)
    p1 = 1 / (1 + np.exp(-(-8 + 25 * x)))
    z = rng.random(1500) < p1
    y = np.where(z, 15 - 20 * x + 0.3 * rng.standard_normal(1500), -5 + 20 * x + 0.4 * rng.standard_normal(1500))
    res = ms.GaussianMoE(2).fit(x, y, n_init=2, seed=0, polish=False)
    setup = ModelSetup.from_spec({"gate": "softmax", "expert": "linear", "k": 2})
    # whichever expert the fit made its reference, the loss takes the best common shift
    v0 = theory_loss("D1", model_atoms(setup, res.params_tree), truth()).value
    coef = np.asarray(res.params_tree.gate.coef) + np.array([1.7, -3.2])        # every row shifted
    shifted = res.params_tree._replace(gate=res.params_tree.gate._replace(coef=coef))
    v1 = theory_loss("D1", model_atoms(setup, shifted), truth()).value
    assert 0 < v0 < 0.5
    assert v1 == pytest.approx(v0, rel=1e-9)


def test_split_reference_expert_is_small_not_one():
    """theory.md §6.1: the truth's reference expert split over two fitted experts."""
    fit = softmax_atoms([0.0, -7.11, 0.0], [0.0, 24.49, 0.0], [20.0, -20.0, 20.0], [-5.0, 15.0, -5.0],
                        [0.16, 0.09, 0.16])
    coded = voronoi_loss(fit["moe"], truth()["moe"], rule_D2(fit["moe"]), translation=False)
    assert coded.value == pytest.approx(1.0, abs=2e-3)           # what the published code computes
    inv = theory_loss("D2", fit, truth())
    assert inv.value < 1e-3                                          # the translation-invariant loss
    assert inv.groups["moe"].shift[0] == pytest.approx(-math.log(2), abs=1e-9)
    exact = softmax_atoms([0.0, -8 + math.log(2), 0.0], [0, 25, 0], [20, -20, 20], [-5, 15, -5], [0.16, 0.09, 0.16])
    assert theory_loss("D2", exact, truth()).value == pytest.approx(0.0, abs=1e-12)


def _manual_D2_no_shift(mass, blocks, t):
    """An independent, loop-based D2 of 1-d blocks (cells by the summed block distances)."""
    tb = t.blocks
    k, ks = len(mass), len(t.mass)
    names = ["gate_slope", "slope", "intercept", "variance"]
    cells = [int(np.argmin([sum(abs(blocks[b][i] - tb[b][j, 0]) for b in names) for j in range(ks)]))
             for i in range(k)]
    size = [cells.count(j) for j in range(ks)]
    total = sum(abs(sum(mass[i] for i in range(k) if cells[i] == j) - t.mass[j]) for j in range(ks))
    for i in range(k):
        j, m = cells[i], size[cells[i]]
        r = {2: 4, 3: 6}.get(m, 1)
        e = {"gate_slope": r, "slope": r / 2, "intercept": r, "variance": r / 2} if m > 1 else dict.fromkeys(names, 1)
        total += mass[i] * sum(abs(blocks[b][i] - tb[b][j, 0]) ** e[b] for b in names)
    return total


def test_translation_search_matches_brute_force():
    t = truth()["moe"]
    mass = np.array([1.3, 0.8, 4e-4])
    blocks = {"gate_slope": np.array([0.4, -0.3, 25.8]), "slope": np.array([20.3, 19.6, -20.1]),
              "intercept": np.array([-5.2, -4.9, 15.1]), "variance": np.array([0.17, 0.15, 0.1])}
    fit = Atoms(mass, {b: v[:, None] for b, v in blocks.items()}, "softmax")
    ours = theory_loss("D2", {"moe": fit}, {"moe": t}).value
    best = np.inf
    for t1 in np.linspace(-1.5, 1.5, 301):
        shifted = dict(blocks, gate_slope=blocks["gate_slope"] + t1)
        for t0 in np.linspace(-1.5, 1.5, 61):
            best = min(best, _manual_D2_no_shift(mass * math.exp(t0), shifted, t))
    assert ours <= best + 1e-12          # the search finds at least the grid's minimum
    assert ours > 0.9 * best             # and the grid (steps 0.01, 0.05) is close to it
    assert _manual_D2_no_shift(mass, blocks, t) == pytest.approx(
        voronoi_loss(fit, t, rule_D2(fit), translation=False).value, rel=1e-12)


def test_D3_sigmoid_rules():
    def sig_atoms(b0, b1, eta, nu):
        b0 = np.asarray(b0, float)
        return Atoms(1 / (1 + np.exp(-b0)), {"gate_intercept": b0[:, None], "gate_slope": np.asarray(b1, float)[:, None],
                                             "expert": np.asarray(eta, float), "variance": np.asarray(nu, float)[:, None]},
                     "sigmoid")
    t = sig_atoms([-0.5, 0.5], [0.0, 0.0], [[-12.0, 4.0], [12.0, 4.0]], [0.4, 0.4])
    f = sig_atoms([-0.4, 0.3, 0.6], [0.1, 0.2, -0.1], [[-12.0, 4.1], [12.2, 4.0], [11.9, 4.0]], [0.45, 0.4, 0.38])
    r = theory_loss("D3", {"r": f}, {"r": t}).groups["r"]
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    singleton = 0.1 + 0.1 + 0.1 + 0.05                                   # |Δβ1| + |Δβ0| + ||Δη|| + |Δν| (unweighted)
    over = (0.2 ** 2 + 0.2 ** 2 + 0.0) + (0.1 ** 2 + 0.1 ** 2 + 0.02 ** 2)
    mass = abs(sig(0.3) + sig(0.6) - sig(0.5))                             # only the cell with 2 atoms
    assert r.value == pytest.approx(singleton + over + mass, rel=1e-10)


def test_D4_against_reference_and_D5_topk():
    t = {"r": Atoms([1.0, 0.5], {"expert": [[0.0], [1.0]], "variance": [[0.1], [0.1]]}, "none")}
    f = {"r": Atoms([1.1, 0.4], {"expert": [[0.1], [1.3]], "variance": [[0.1], [0.2]]}, "none")}
    d4 = theory_loss("D4", f, t).value
    assert d4 == pytest.approx(0.1 + 0.3 + 0.1, rel=1e-12)               # no mass term, unweighted
    d1 = theory_loss("D1", f, t)
    cells = d1.groups["r"].cell_terms
    d5 = theory_loss("D5", f, t, {"topk": 1}).value
    assert d5 == pytest.approx(max(cells), rel=1e-12)
    with pytest.raises(ValueError, match="topk"):
        theory_loss("D5", f, t)


def test_gaussian_gate_Dbar_Dtilde():
    def g(pi, c, A):
        k = len(pi)
        return {"g": Atoms(pi, {"loc": np.asarray(c, float)[:, None], "scale": np.full((k, 1), 0.01),
                                "slope": np.asarray(A, float)[:, None], "intercept": np.zeros((k, 1)),
                                "variance": np.full((k, 1), 0.02)}, "gaussian")}
    t = g([0.5, 0.5], [0.0, 0.5], [0.4, -0.7])
    f = g([0.25, 0.25, 0.5], [0.01, -0.01, 0.5], [0.5, 0.3, -0.7])
    bar = theory_loss("Dbar", f, t).value
    tilde = theory_loss("Dtilde", f, t).value
    loc = 2 * 0.25 * 0.01 ** 4
    assert bar == pytest.approx(loc + 2 * 0.25 * 0.1 ** 2, rel=1e-10)   # slope exponent 2
    assert tilde == pytest.approx(loc + 2 * 0.25 * 0.1 ** 2, rel=1e-10)  # r̄/2 = 2 for a cell of 2 atoms ...
    f3 = g([0.2, 0.2, 0.1, 0.5], [0.01, -0.01, 0.0, 0.5], [0.5, 0.3, 0.4, -0.7])
    bar3 = theory_loss("Dbar", f3, t).value
    tilde3 = theory_loss("Dtilde", f3, t).value                          # ... but r̄(3)/2 = 3 for 3 atoms
    assert bar3 - tilde3 == pytest.approx(0.4 * (0.1 ** 2 - 0.1 ** 3), rel=1e-9)


def test_atoms_validation_messages():
    with pytest.raises(ValueError, match="block 'slope' must have shape"):
        Atoms([1.0, 1.0], {"slope": np.zeros((3, 1))})
    with pytest.raises(ValueError, match="masses must be finite and non-negative"):
        Atoms([1.0, -1.0], {"slope": np.zeros((2, 1))})
    f = Atoms([1.0], {"slope": [[0.0]], "weird": [[1.0]]})
    t = Atoms([1.0], {"slope": [[0.0]], "weird": [[1.0]]})
    with pytest.raises(ValueError, match="does not define exponents for block"):
        theory_loss("D2", {"g": f}, {"g": t})
    with pytest.raises(ValueError, match="different atom groups"):
        theory_loss("D1", {"a": f}, {"b": t})


def test_density_distances_closed_form():
    d = 0.7
    logp = lambda X, y: norm.logpdf(y[None, :] - 0.0 * X[:, :1])        # noqa: E731
    logq = lambda X, y: norm.logpdf(y[None, :] - d - 0.0 * X[:, :1])    # noqa: E731
    tv = conditional_distance(logp, logq, kind="tv", x_uniform=(0, 1), y_range=(-12, 13))
    assert tv.value == pytest.approx(2 * norm.cdf(d / 2) - 1, abs=1e-9)
    assert tv.error < 1e-6 and tv.method == "quadrature"
    h = conditional_distance(logp, logq, kind="hellinger", x_uniform=(0, 1), y_range=(-12, 13))
    assert h.value == pytest.approx(math.sqrt(1 - math.exp(-d * d / 8)), abs=1e-9)
    # X-dependent shift, Monte Carlo over X: the error bar covers the truth
    rng = np.random.default_rng(0)
    xs = rng.uniform(0, 1, 400)[:, None]
    logq2 = lambda X, y: norm.logpdf(y[None, :] - X[:, :1])             # noqa: E731
    mc = conditional_distance(logp, logq2, kind="tv", x_sample=xs, y_range=(-12, 13))
    exact = np.mean(2 * norm.cdf(np.linspace(0, 1, 200001) / 2) - 1)
    assert mc.method == "monte-carlo" and abs(mc.value - exact) < 1.5 * mc.error  # error = 2 SE
    with pytest.raises(ValueError, match="exactly one of"):
        conditional_distance(logp, logq, x_uniform=(0, 1), x_sample=xs, y_range=(0, 1))


def test_deepseek_and_gaussian_gate_adapters():
    """The shared+routed adapter splits atoms into groups; the Gaussian-gate adapter gives loc/scale blocks."""
    from moestat.experts import GaussianLinear, GaussianParams, Stacked, StackedParams
    from moestat.fitting.em import MoEParams
    from moestat.gating import GaussianGate, GaussianGateParams, SharedRouted, SharedRoutedParams, Softmax, SoftmaxParams
    from moestat.montecarlo.adapters import model_atoms
    from moestat.montecarlo.setup import ModelSetup
    lin = GaussianLinear()
    setup = ModelSetup(gate=SharedRouted(n_shared=1, routed=Softmax()), expert=Stacked(((lin, 1), (lin, 2))), k=3)
    params = MoEParams(
        gate=SharedRoutedParams(shared=np.array([1.0]), routed=SoftmaxParams(coef=np.array([[0.0, 0.0], [1.0, 0.0]]))),
        expert=StackedParams(blocks=(GaussianParams(coef=np.array([[0.0, 2.0]]), sigma2=np.array([0.2])),
                                     GaussianParams(coef=np.array([[2.0, 8.0], [1.0, -6.0]]), sigma2=np.array([0.4, 0.4])))))
    atoms = model_atoms(setup, params)
    assert set(atoms) == {"shared", "routed"} and atoms["shared"].gate == "shared"
    np.testing.assert_allclose(atoms["routed"].mass, [1 / math.e, 1.0])  # exp(beta0), up to a common factor
    np.testing.assert_allclose(atoms["routed"].blocks["slope"].ravel(), [8.0, -6.0])
    assert theory_loss("D2", atoms, atoms).value == pytest.approx(0.0, abs=1e-14)
    # an over-specified shared block (two copies of the shared expert) uses the shared-expert D2 exponents
    fit = dict(atoms, shared=Atoms([0.6, 0.4], {"slope": [[2.1], [1.9]], "intercept": [[0.1], [-0.1]],
                                                "variance": [[0.2], [0.2]]}, "shared"))
    d = theory_loss("D2", fit, atoms)
    assert d.groups["shared"].value == pytest.approx(0.6 * (0.1 ** 2 + 0.1 ** 4) + 0.4 * (0.1 ** 2 + 0.1 ** 4), rel=1e-10)
    gg = ModelSetup(gate=GaussianGate(), expert=lin, k=2)
    assert not gg.uses_gate_intercept
    gp = MoEParams(gate=GaussianGateParams(weight=np.array([0.3, 0.7]), mean=np.array([[0.1], [0.5]]),
                                           cov=np.array([[[0.04]], [[0.01]]])),
                   expert=GaussianParams(coef=np.array([[0.3, 0.4], [0.2, 0.0]]), sigma2=np.array([0.01, 0.02])))
    ga = model_atoms(gg, gp)["moe"]
    assert ga.gate == "gaussian" and sorted(ga.blocks) == ["intercept", "loc", "scale", "slope", "variance"]
    np.testing.assert_allclose(ga.blocks["scale"].ravel(), [0.04, 0.01])


def test_d3_on_the_intercept_ridge_of_a_flat_sigmoid_truth():
    """With beta*_1 = 0 the normalized-sigmoid intercepts are identified only up to sigma(beta_0j) = c w*_j:
    the raw D3 counts a move along that ridge, the ridge-infimum D3 does not."""
    from scipy.special import expit, logit
    from moestat.losses import Atoms, rule_D3_routed, sigmoid_ridge_loss, theory_loss, voronoi_loss
    b0 = np.array([-0.5, 0.5])
    w = expit(b0) / expit(b0).sum()

    def atoms(intercepts, expert_shift=0.0):
        return Atoms(expit(intercepts), {"gate_intercept": intercepts[:, None], "gate_slope": np.zeros((2, 1)),
                                         "expert": np.array([[1.0], [2.0 + expert_shift]]),
                                         "variance": np.array([[0.4], [0.4]])}, "sigmoid")
    true = atoms(b0)
    on_ridge = atoms(logit(1.4 * w))                       # the same gate as the truth
    rule = rule_D3_routed(true)
    raw = voronoi_loss(on_ridge, true, rule, translation=False).value
    assert raw == pytest.approx(np.abs(logit(1.4 * w) - b0).sum(), rel=1e-12)   # singleton cells: sum |d beta_0|
    ridge = sigmoid_ridge_loss(on_ridge, true, rule)
    assert ridge.value < 1e-5 and ridge.errors["ridge_scale"] == pytest.approx(1.4, abs=1e-4)
    # off the ridge by 0.3 in one expert: the ridge loss is that distance (unweighted singleton term)
    off = sigmoid_ridge_loss(atoms(logit(1.4 * w), 0.3), true, rule).value
    assert off == pytest.approx(0.3, abs=1e-5)
    lv = theory_loss("D3", {"routed": on_ridge}, {"routed": true}, {"intercept_ridge": True})
    assert lv.value == pytest.approx(ridge.value)
    with pytest.raises(ValueError, match="every true gate slope is 0"):
        sigmoid_ridge_loss(on_ridge, Atoms(true.mass, dict(true.blocks, gate_slope=np.ones((2, 1))), "sigmoid"),
                           rule)


def test_omit_blocks_keeps_the_cells_and_drops_those_terms():
    from moestat.losses import Atoms, theory_loss
    true = Atoms([0.4, 0.6], {"gate_intercept": [[-0.5], [0.5]], "gate_slope": [[0.0], [0.0]],
                              "expert": [[1.0], [2.0]], "variance": [[0.4], [0.4]]}, "sigmoid")
    fit = Atoms([0.4, 0.6], {"gate_intercept": [[-0.5], [0.5]], "gate_slope": [[3.0], [0.0]],
                             "expert": [[1.1], [2.0]], "variance": [[0.4], [0.4]]}, "sigmoid")
    full = theory_loss("D3", {"r": fit}, {"r": true}).value
    part = theory_loss("D3", {"r": fit}, {"r": true}, {"omit_blocks": ["gate_slope"]}).value
    # D3 singleton routed terms are unweighted: |d beta_1| + |d eta| = 3 + 0.1, without the slope 0.1
    assert full == pytest.approx(3.1, abs=1e-12) and part == pytest.approx(0.1, abs=1e-12)
