"""Draw responses from a mixture of experts with *given* parameters (no fit needed): ``ms.simulate``.

``simulate`` is generic over the families: the gate's ``log_weights`` give the
expert probabilities at each point, a label is drawn from them, and the
expert's ``sample`` draws y given the labels -- the same two steps, with the same
random streams, as :meth:`moestat.results.MoEResults.sample`, so
``simulate(model, res.params, X, seed=s)`` equals ``res.sample(X, seed=s)``.
For a joint gate (Gaussian gate) it draws y given the supplied x.

(The Monte Carlo harness has its own :func:`moestat.simulate.simulate_data`,
which takes gate and expert families and uses NumPy streams that do not
change with the JAX version; this function takes a model and covariates in
any form ``fit`` accepts, and uses JAX keys so that it reproduces
``MoEResults.sample``.)
"""
from __future__ import annotations

from typing import Any

import jax
import numpy as np

from . import em
from .data import make_data


def simulate(model, params: em.MoEParams, X: Any, gate_X: Any = None, seed: int = 0, data: Any = None,
             return_labels: bool = False):
    """Draw y (n,) from ``model`` with parameters ``params`` at covariates ``X``.

    Parameters
    ----------
    model : GaussianMoE (or another moestat estimator); gives the gate, the experts and the intercepts
    params : MoEParams
        Parameters in the model's layout (e.g. ``res.params`` or ``model.base_params``-shaped arrays).
    X, gate_X, data : covariates as for ``fit`` (arrays, DataFrames; formulas need a response column)
    seed : int
    return_labels : bool
        Also return the expert labels (n,) that generated each point.

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
    from .model import _as_params
    Xa = X if isinstance(X, str) else np.asarray(X) if not hasattr(X, "columns") else X
    n = len(data) if isinstance(X, str) else np.shape(Xa)[0]
    design = model.design(X, np.zeros(n), gate_X, None, data)
    p, pg = design.X.shape[1], design.Xg.shape[1]
    base = model.base_params(p, pg, {"var_y": 1.0})
    P = _as_params(params, base)
    dat = make_data(design.X, design.Xg, np.zeros(design.n), np.ones(design.n))
    kz, ky = jax.random.split(jax.random.PRNGKey(int(seed)))
    lg = model.gate.log_weights(P.gate, dat.Xg)
    z = jax.random.categorical(kz, lg, axis=0)
    y = np.asarray(model.expert.sample(ky, P.expert, dat.X, z))[: design.n]
    return (y, np.asarray(z)[: design.n]) if return_labels else y
