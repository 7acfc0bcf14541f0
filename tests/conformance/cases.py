"""Conformance cases: for every registered family, settings, parameters and its NumPy transcription.

``GATE_CASES[name]`` and ``EXPERT_CASES[name]`` list the cases of the family
registered under ``name``.  A family registered without an entry here fails
the conformance suite: a new family brings its reference formula with it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable

import numpy as np

import moestat as ms

from . import transcriptions as T

G, E = ms.gating, ms.experts


# ---------------------------------------------------------------------------------------------- gates

@dataclass
class GateCase:
    """A gate object, its sizes, a parameter builder and the transcription of its log weights.

    ``params(rng, scale)`` builds parameters; ``scale`` multiplies the score
    coefficients (300 gives scores of order 1e3: extreme logits).
    """

    id: str
    gate: Any
    k: int
    d: int
    params: Callable
    reference: Callable


def gate_design(gate, Z):
    """moestat's (pg, n) gate design from raw covariates Z (n, d), built through the gate's public hooks."""
    F = np.asarray(gate.transform(np.asarray(Z, dtype=np.float64)), dtype=np.float64)
    rows = [F.T] if not gate.uses_intercept else [np.ones((1, F.shape[0])), F.T]
    return np.vstack(rows)


def _coef(rng, k, d, scale, reference=True):
    c = scale * rng.normal(size=(k, d + 1))
    if reference:
        c[0] = 0.0
    return c


def _softmax_params(k, d):
    return lambda rng, scale: G.SoftmaxParams(coef=_coef(rng, k, d, scale))


def _ns_params(k, d):
    return lambda rng, scale: G.NormalizedSigmoidParams(coef=_coef(rng, k, d, scale, reference=False))


def _temperature_params(k, d):
    def build(rng, scale):
        return G.TemperatureParams(coef=_coef(rng, k, d, scale), log_temp=np.log(0.3 if scale <= 1 else 0.05))
    return build


def _activation_params(k, d, reference, log_temp=None):
    def build(rng, scale):
        c = _coef(rng, k, d, scale, reference=False)
        if reference == "expert":
            c[0] = 0.0
        else:
            c[0, 0] = 0.0
        lt = log_temp if log_temp is not None else np.log(0.5 if scale <= 1 else 1e-3)
        return G.ActivationParams(coef=c, log_temp=np.asarray(lt))
    return build


def _gaussian_params(k, d, diagonal):
    def build(rng, scale):
        weight = rng.dirichlet(np.full(k, 2.0))
        spread = 1.0 if scale <= 1 else 30.0
        mean = spread * rng.normal(size=(k, d))
        cov = []
        for _ in range(k):
            A = rng.normal(size=(d, d))
            S = np.diag(rng.uniform(0.3, 2.0, d)) if diagonal else A @ A.T + 0.3 * np.eye(d)
            cov.append(S if scale <= 1 else S / 100.0)
        return G.GaussianGateParams(weight=weight, mean=mean, cov=np.stack(cov))
    return build


def _shared_params(n_shared, routed_builder):
    def build(rng, scale):
        return G.SharedRoutedParams(shared=rng.dirichlet(np.full(n_shared, 2.0)), routed=routed_builder(rng, scale))
    return build


GATE_CASES: dict[str, list[GateCase]] = {
    "softmax": [GateCase("k3d2", G.Softmax(), 3, 2, _softmax_params(3, 2), T.softmax_gate)],
    "modified_softmax": [
        GateCase("sigmoid-k3d2", G.ModifiedSoftmax("sigmoid"), 3, 2, _softmax_params(3, 2),
                 partial(T.modified_softmax_gate, transform="sigmoid")),
        GateCase("tanh-k2d1", G.ModifiedSoftmax("tanh"), 2, 1, _softmax_params(2, 1),
                 partial(T.modified_softmax_gate, transform="tanh")),
    ],
    "normalized_sigmoid": [GateCase("k3d2", G.NormalizedSigmoid(), 3, 2, _ns_params(3, 2),
                                    T.normalized_sigmoid_gate)],
    "topk": [
        GateCase("K2of4-scores", G.TopK(k=2), 4, 2, _softmax_params(4, 2), partial(T.topk_gate, K=2)),
        GateCase("K1of3-slopes", G.TopK(k=1, select="slopes"), 3, 1, _softmax_params(3, 1),
                 partial(T.topk_gate, K=1, select="slopes")),
        GateCase("K2of3-slopes", G.TopK(k=2, select="slopes"), 3, 2, _softmax_params(3, 2),
                 partial(T.topk_gate, K=2, select="slopes")),
    ],
    "temperature_softmax": [
        GateCase("fixed-k3d2", G.TemperatureSoftmax(temperature=0.3), 3, 2, _temperature_params(3, 2),
                 T.temperature_gate),
        GateCase("estimated-k2d1", G.TemperatureSoftmax(estimate_temperature=True), 2, 1,
                 _temperature_params(2, 1), T.temperature_gate),
    ],
    "activation_softmax": [
        GateCase("sigmoid-expert-k3d2", G.ActivationSoftmax(), 3, 2, _activation_params(3, 2, "expert"),
                 partial(T.activation_gate, activation="sigmoid")),
        GateCase("tanh-intercept-k3d1", G.ActivationSoftmax(activation="tanh", reference="intercept"), 3, 1,
                 _activation_params(3, 1, "intercept"), partial(T.activation_gate, activation="tanh")),
        # tau = 1e-9 below the floor min_temperature = 1e-4: the weights use the floor
        GateCase("sigmoid-floor-k2d2", G.ActivationSoftmax(min_temperature=1e-4), 2, 2,
                 _activation_params(2, 2, "expert", log_temp=np.log(1e-9)),
                 partial(T.activation_gate, activation="sigmoid", min_temperature=1e-4)),
    ],
    "gaussian": [
        GateCase("full-k3d2", G.GaussianGate(), 3, 2, _gaussian_params(3, 2, False), T.gaussian_gate),
        GateCase("diagonal-k2d1", G.GaussianGate(covariance="diagonal"), 2, 1, _gaussian_params(2, 1, True),
                 T.gaussian_gate),
    ],
    "shared_routed": [
        GateCase("2shared-softmax3", G.SharedRouted(n_shared=2, routed="softmax"), 5, 2,
                 _shared_params(2, _softmax_params(3, 2)), partial(T.shared_routed_gate, routed=T.softmax_gate)),
        GateCase("1shared-nsigmoid2", G.SharedRouted(n_shared=1, routed="normalized_sigmoid"), 3, 1,
                 _shared_params(1, _ns_params(2, 1)),
                 partial(T.shared_routed_gate, routed=T.normalized_sigmoid_gate)),
        GateCase("1shared-top1of3", G.SharedRouted(n_shared=1, routed=G.TopK(k=1)), 4, 2,
                 _shared_params(1, _softmax_params(3, 2)),
                 partial(T.shared_routed_gate, routed=partial(T.topk_gate, K=1))),
    ],
    "expert_prototyping": [
        GateCase("G2of4-softmax", G.ExpertPrototyping(groups=2), 4, 2, _softmax_params(4, 2),
                 partial(T.prototyping_gate, groups=2)),
        GateCase("G3of6-average", G.ExpertPrototyping(groups=3, combine="average"), 6, 1, _softmax_params(6, 1),
                 partial(T.prototyping_gate, groups=3, combine="average")),
        GateCase("G1of3-softmax", G.ExpertPrototyping(groups=1), 3, 2, _softmax_params(3, 2),
                 partial(T.prototyping_gate, groups=1)),
    ],
    "entropy_switched": [
        GateCase("K1-q2", G.EntropySwitched(k=1, threshold=0.3, q=2.0), 3, 2, _softmax_params(3, 2),
                 partial(T.entropy_switched_gate, K=1, threshold=0.3, q=2.0)),
        GateCase("K2-shannon", G.EntropySwitched(k=2, threshold=0.8, q=1.0), 4, 1, _softmax_params(4, 1),
                 partial(T.entropy_switched_gate, K=2, threshold=0.8, q=1.0)),
    ],
}


def gate_inputs(rng, n, d):
    """Raw gate covariates (n, d): normal draws, an exact zero row (ties of the slopes) and large values."""
    Z = 1.5 * rng.normal(size=(n, d))
    Z[0] = 0.0
    Z[1] = 4.0
    Z[2] = -4.0
    return Z


# ---------------------------------------------------------------------------------------------- experts

@dataclass
class ExpertCase:
    """An expert family object, its sizes, parameters, response draws and transcriptions.

    ``aux(rng, n)`` gives the per-row datum a GLM expert carries in the last
    design row (offset or trials), None otherwise.  ``moments(params, X, aux)``
    gives the (k, n) mean and variance of y under each expert (for
    multinomial experts, the (k, C, n) class probabilities and None).
    """

    id: str
    expert: Any
    k: int
    d: int
    params: Callable
    responses: Callable            # (rng, params, X, aux) -> y (n,) values at which the density is evaluated
    log_density: Callable          # (params, X, y, aux) -> (k, n)
    mean: Callable                 # (params, X, aux) -> (k, n) or (k, C, n)
    moments: Callable              # (params, X, aux) -> (mean, var)
    aux: Callable = field(default=lambda rng, n: None)


def expert_design(expert, X, aux=None):
    """moestat's (p, n) expert design: [1, x] through the family's ``transform_design``; GLM rows get ``aux``."""
    X = np.asarray(X, dtype=np.float64).reshape(np.shape(X)[0], -1)
    D = np.asarray(expert.transform_design(np.column_stack([np.ones(X.shape[0]), X]), True), dtype=np.float64)
    if aux is not None:          # GLM experts: the last design column carries the offset / trials
        D = D.copy()
        D[:, -1] = aux
    return D.T


def _gaussian_responses(rng, params, X, aux, mean_fn):
    m = mean_fn(params, X, aux)
    return m[rng.integers(0, m.shape[0], m.shape[1]), np.arange(m.shape[1])] + rng.normal(size=m.shape[1])


def _gaussian_case(id_, expert, k, d, params, mean_fn):
    def logpdf(p, X, y, aux):
        return T.gaussian_log_density(mean_fn(p, X, aux), p.sigma2, y)

    def moments(p, X, aux):
        m = mean_fn(p, X, aux)
        return m, np.broadcast_to(np.asarray(p.sigma2)[:, None], m.shape)

    return ExpertCase(id_, expert, k, d, params, partial(_gaussian_responses, mean_fn=mean_fn), logpdf, mean_fn,
                      moments)


def _gp(k, p):
    return lambda rng: E.GaussianParams(coef=rng.normal(size=(k, p)), sigma2=rng.uniform(0.2, 2.0, k))


def _neuron_params(k, d):
    def build(rng):
        coef = rng.normal(size=(k, d + 1))
        scale = rng.choice([-1.0, 1.0], k) * rng.uniform(0.5, 2.0, k)
        return E.NeuronParams(coef=coef, scale=scale, sigma2=rng.uniform(0.2, 2.0, k))
    return build


def _linear_mean(p, X, aux):
    return T.linear_mean(p, X)


def _poly_mean(degree):
    return lambda p, X, aux: T.polynomial_mean(p, X, degree)


def _neuron_mean(act, bias=True):
    return lambda p, X, aux: T.neuron_mean(p, X, act, bias)


def _stacked_params(builders):
    return lambda rng: E.StackedParams(blocks=tuple(b(rng) for b in builders))


def _stacked_mean(means):
    return lambda p, X, aux: np.vstack([m(b, X, aux) for m, b in zip(means, p.blocks)])


def _stacked_case(id_, blocks, d, builders, means):
    expert = E.Stacked(blocks)
    k = sum(c for _, c in blocks)
    mean_fn = _stacked_mean(means)
    base = _gaussian_case(id_, expert, k, d, _stacked_params(builders), mean_fn)

    def sigma2(p):
        return np.concatenate([np.asarray(b.sigma2) for b in p.blocks])

    def logpdf(p, X, y, aux):
        return T.gaussian_log_density(mean_fn(p, X, aux), sigma2(p), y)

    def moments(p, X, aux):
        m = mean_fn(p, X, aux)
        return m, np.broadcast_to(sigma2(p)[:, None], m.shape)

    base.log_density, base.moments = logpdf, moments
    return base


def _glm_params(k, d):
    return lambda rng: E.GLMParams(coef=0.5 * rng.normal(size=(k, d + 1)))


def _poisson_case(id_, k, d):
    def responses(rng, p, X, aux):
        return rng.poisson(3.0, size=np.shape(X)[0]).astype(np.float64)

    def moments(p, X, aux):
        m = T.poisson_mean(p, X, aux)
        return m, m

    return ExpertCase(id_, E.PoissonGLM(), k, d, _glm_params(k, d), responses,
                      lambda p, X, y, aux: T.poisson_log_density(p, X, y, aux),
                      lambda p, X, aux: T.poisson_mean(p, X, aux), moments,
                      aux=lambda rng, n: rng.uniform(-1.0, 1.0, n))


def _binomial_case(id_, link, k, d):
    def responses(rng, p, X, aux):
        return rng.integers(0, aux + 1).astype(np.float64)

    def moments(p, X, aux):
        q = T.binomial_mean(p, X, link)
        return aux[None] * q, aux[None] * q * (1.0 - q)

    return ExpertCase(id_, E.BinomialGLM(link=link), k, d, _glm_params(k, d), responses,
                      lambda p, X, y, aux: T.binomial_log_density(p, X, y, aux, link),
                      lambda p, X, aux: T.binomial_mean(p, X, link), moments,
                      aux=lambda rng, n: rng.integers(1, 9, n).astype(np.float64))


def _multinomial_case(id_, k, d, C):
    def params(rng):
        A = rng.normal(size=(k, C, d + 1))
        A[:, 0] = 0.0
        return E.MultinomialParams(coef=A)

    def responses(rng, p, X, aux):
        return rng.integers(0, C, np.shape(X)[0])

    return ExpertCase(id_, E.MultinomialLogistic(), k, d, params, responses,
                      lambda p, X, y, aux: T.multinomial_log_density(p, X, y),
                      lambda p, X, aux: T.multinomial_mean(p, X),
                      lambda p, X, aux: (T.multinomial_mean(p, X), None))


EXPERT_CASES: dict[str, list[ExpertCase]] = {
    "linear": [_gaussian_case("k3d2", E.GaussianLinear(), 3, 2, _gp(3, 3), _linear_mean)],
    "polynomial": [
        _gaussian_case("deg3-k2d2", E.GaussianPolynomial(degree=3), 2, 2, _gp(2, 10), _poly_mean(3)),
        _gaussian_case("deg2-k3d1", E.GaussianPolynomial(degree=2), 3, 1, _gp(3, 3), _poly_mean(2)),
    ],
    "relu": [
        _gaussian_case("bias-k3d2", E.ReLUExpert(), 3, 2, _neuron_params(3, 2), _neuron_mean("relu")),
        _gaussian_case("nobias-k2d1", E.ReLUExpert(bias=False), 2, 1, _neuron_params(2, 1),
                       _neuron_mean("relu", bias=False)),
    ],
    "gelu": [
        _gaussian_case("bias-k3d2", E.GELUExpert(), 3, 2, _neuron_params(3, 2), _neuron_mean("gelu")),
        _gaussian_case("nobias-k2d1", E.GELUExpert(bias=False), 2, 1, _neuron_params(2, 1),
                       _neuron_mean("gelu", bias=False)),
    ],
    "poisson": [_poisson_case("log-k3d2", 3, 2)],
    "binomial": [_binomial_case("%s-k2d2" % link, link, 2, 2) for link in ("logit", "probit", "cloglog")],
    "multinomial": [_multinomial_case("k2C3d2", 2, 2, 3), _multinomial_case("k3C2d1", 3, 1, 2)],
    "stacked": [
        _stacked_case("1relu+2linear", ((E.ReLUExpert(), 1), ("linear", 2)), 1,
                      [_neuron_params(1, 1), _gp(2, 2)], [_neuron_mean("relu"), _linear_mean]),
        _stacked_case("2gelu+1linear", ((E.GELUExpert(), 2), (E.GaussianLinear(), 1)), 2,
                      [_neuron_params(2, 2), _gp(1, 3)], [_neuron_mean("gelu"), _linear_mean]),
    ],
}


def expert_inputs(rng, n, d):
    """Raw expert covariates (n, d)."""
    return 1.5 * rng.normal(size=(n, d))
