"""Simulate data from a mixture of experts with given parameters.

Two entry points:

* :func:`simulate` (``ms.simulate``) takes an estimator, parameters and
  covariates in any form ``fit`` accepts, and draws y with JAX keys exactly as
  :meth:`moestat.inference.results.MoEResults.sample` does, so
  ``simulate(model, res.params_tree, X, seed=s)`` equals ``res.sample(X, seed=s)``.
* :func:`simulate_data` draws (x, y, z) from gate and expert families with given
parameters; the Monte Carlo harness and the true models of the published
experiments use it.

The Monte Carlo harness needs replicate r of size n to be *the same data*
whether it runs alone, in a batch, on another worker or after a resume, and in
every JAX version (JAX's random streams changed in 0.5, ``engineering.md``
§7.6).  So every draw here comes from NumPy's ``Generator(PCG64)`` seeded by a
``SeedSequence`` -- the harness uses ``SeedSequence([seed, n, r])`` -- and JAX
only evaluates the deterministic gate probabilities and expert means.

A draw is: covariates (or a fixed grid), labels z ~ Categorical(g(x)) by the
inverse CDF of one uniform per point, then y | z from the expert family's
:meth:`~moestat.experts.base.Expert.sample_numpy` (Gaussian: mean + sd *
standard normal; categorical: inverse CDF of one uniform; GLM count experts:
NumPy's Poisson / binomial draws at the expert's mean, the binomial trials
from the design's last row).  Families without a NumPy form fall back to their
JAX ``sample`` with a key drawn from the same stream (then the stream is only
as stable as JAX's).
"""
from __future__ import annotations

from functools import partial
from typing import Any

import jax
import numpy as np

from . import _jax  # noqa: F401  (float64)
from .fitting import em
from ._math import inverse_cdf
from .data.design import build_design, family_design, make_data, padded_eval

X_LAWS = ("grid", "uniform", "normal")


def design_matrices(x: np.ndarray, gate, expert, intercept: bool = True, gate_intercept: bool = True):
    """Expert design (n, p) and gate design (n, pg) from raw covariates x (n, d), encoded as ``fit`` encodes them."""
    x = np.asarray(x, dtype=np.float64)
    x = x[:, None] if x.ndim == 1 else x
    d = build_design(x, np.zeros(x.shape[0]), None, None, None, intercept=intercept, gate_intercept=gate_intercept,
                     gate_transform=gate.transform)
    d = family_design(d, gate, expert)
    return np.asarray(d.X, dtype=np.float64), np.asarray(d.Xg, dtype=np.float64)


def draw_x(law: dict, n: int, rng: np.random.Generator) -> np.ndarray:
    """Covariates (n, d) from a law: {"law": "grid"|"uniform"|"normal", "low", "high", "d", "mean", "sd"}.

    "grid" is linspace(low, high, n) in each coordinate (the design of
    ``theory.md`` §3.5) and uses no randomness.
    """
    kind = law.get("law", "uniform")
    d = int(law.get("d", 1))
    if kind == "grid":
        g = np.linspace(float(law.get("low", 0.0)), float(law.get("high", 1.0)), n)
        return np.repeat(g[:, None], d, axis=1)
    if kind == "uniform":
        return rng.uniform(float(law.get("low", 0.0)), float(law.get("high", 1.0)), size=(n, d))
    if kind == "normal":
        return float(law.get("mean", 0.0)) + float(law.get("sd", 1.0)) * rng.standard_normal((n, d))
    raise ValueError("unknown covariate law %r; choose one of %s" % (kind, ", ".join(X_LAWS)))


@partial(jax.jit, static_argnames=("gate",))
def _log_weights(params, Xg, gate):
    return gate.log_weights(params, Xg)


def gate_probabilities(gate, gate_params, Xg: np.ndarray) -> np.ndarray:
    """(k, n) gating probabilities at the gate design (n, pg)."""
    return np.exp(padded_eval(_log_weights, gate_params, Xg, gate))


def simulate_data(gate, expert, params, x: np.ndarray | None = None, *, n: int | None = None, x_law: dict | None = None,
             seed: Any = 0, intercept: bool = True, gate_intercept: bool = True):
    """Draw (x, y, z) from a mixture of experts.

    Parameters
    ----------
    gate, expert : moestat gate and expert family objects
    params : MoEParams
        True parameters (gate and expert PyTrees).
    x : array (n, d), optional
        Fixed covariates; otherwise ``n`` draws from ``x_law`` (see :func:`draw_x`).
        A joint (Gaussian) gate draws x from its own mixture
        (:meth:`moestat.gating.base.Gate.sample_x`).
    seed : int, sequence of ints or numpy SeedSequence
        Seeds the NumPy stream (the harness passes ``[seed, n, replicate]``).

    Returns
    -------
    x (n, d), y (n,), z (n,) expert labels
    """
    ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    s_x, s_z, s_y = ss.spawn(3)
    z = None
    if x is None:
        if n is None:
            raise ValueError("give covariates x or a sample size n")
        if gate.joint:
            x, z = gate.sample_x(params.gate, int(n), np.random.default_rng(s_x))
        else:
            x = draw_x(x_law or {"law": "uniform"}, int(n), np.random.default_rng(s_x))
    x = np.asarray(x, dtype=np.float64)
    x = x[:, None] if x.ndim == 1 else x
    X, Xg = design_matrices(x, gate, expert, intercept, gate_intercept)
    if z is None:
        probs = gate_probabilities(gate, params.gate, Xg)
        z = inverse_cdf(probs, np.random.default_rng(s_z).random(x.shape[0]))
    y = expert.sample_numpy(np.random.default_rng(s_y), params.expert, X, np.asarray(z))
    return x, y, np.asarray(z)


def simulate(model, params: em.MoEParams, X: Any, gate_X: Any = None, seed: int = 0, data: Any = None,
             return_labels: bool = False):
    """Draw y (n,) from ``model`` with parameters ``params`` at covariates ``X``.

    Parameters
    ----------
    model : GaussianMoE (or another moestat estimator); gives the gate, the experts and the intercepts
    params : MoEParams
        Parameters in the model's layout (e.g. ``res.params_tree`` or ``model.base_params``-shaped arrays).
    X, gate_X, data : covariates as for ``fit`` (arrays, DataFrames; formulas need a response column)
    seed : int
    return_labels : bool
        Also return the expert labels (n,) that generated each point.

    Returns
    -------
    y : ndarray, shape (n,)
        The draws (class labels for classification models).
    z : ndarray, shape (n,)
        The generating experts (0-based), only with ``return_labels=True``.

    Examples
    --------
    >>> import numpy as np, moestat as ms
    >>> model = ms.GaussianMoE(2)
    >>> P = ms.MoEParams(gate=ms.gating.SoftmaxParams(coef=np.array([[0.0, 0.0], [0.0, 4.0]])),
    ...                  expert=ms.experts.GaussianParams(coef=np.array([[1.0, 2.0], [-1.0, -2.0]]),
    ...                                                   sigma2=np.array([0.25, 0.25])))
    >>> y = ms.simulate(model, P, np.linspace(-1, 1, 5), seed=1)
    >>> y.shape
    (5,)
    """
    from .fitting.starts import as_params
    Xa = X if isinstance(X, str) else np.asarray(X) if not hasattr(X, "columns") else X
    n = len(data) if isinstance(X, str) else np.shape(Xa)[0]
    design = model.design(X, np.zeros(n), gate_X, None, data)
    p, pg = design.X.shape[1], design.Xg.shape[1]
    base = model.base_params(p, pg, {"var_y": 1.0})
    P = as_params(params, base)
    dat = make_data(design.X, design.Xg, np.zeros(design.n), np.ones(design.n))
    kz, ky = jax.random.split(jax.random.PRNGKey(int(seed)))
    lg = model.gate.log_weights(P.gate, dat.Xg)
    z = jax.random.categorical(kz, lg, axis=0)
    y = np.asarray(model.expert.sample(ky, P.expert, dat.X, z))[: design.n]
    return (y, np.asarray(z)[: design.n]) if return_labels else y
