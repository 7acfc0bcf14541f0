"""Direct maximisation of a softmax-gated multinomial-logistic MoE log-likelihood with SciPy.

An independent check on the EM estimates: the log-likelihood is written out
here from scratch (``jax.nn.log_softmax``; nothing from moestat's kernels),
and SciPy maximises it -- BFGS from the given start, then trust-region Newton
steps with the exact Hessian -- in the identified parametrisation (gate
expert 0 and class 0 fixed at zero).  Used by the tests and benchmarks to get
"the MLE that direct optimisation started at the truth finds".
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import minimize

import moestat  # noqa: F401  (float64 on import)


def _unpack(theta, k, C, p, pg):
    G = jnp.concatenate([jnp.zeros((1, pg)), theta[: (k - 1) * pg].reshape(k - 1, pg)])
    A = theta[(k - 1) * pg:].reshape(k, C - 1, p)
    return G, jnp.concatenate([jnp.zeros((k, 1, p)), A], axis=1)


@partial(jax.jit, static_argnames=("k", "C"))
def negloglik(theta, X, Xg, y, k, C):
    """Minus the log-likelihood at the free vector theta: gate rows 1..k-1, then experts (k, C-1, p)."""
    G, A = _unpack(theta, k, C, X.shape[1], Xg.shape[1])
    lg = jax.nn.log_softmax(Xg @ G.T, axis=1)                                       # (n, k)
    la = jax.nn.log_softmax(jnp.einsum("np,kcp->nkc", X, A), axis=2)                 # (n, k, C)
    ly = jnp.take_along_axis(la, y[:, None, None], axis=2)[..., 0]
    return -jnp.sum(jax.scipy.special.logsumexp(lg + ly, axis=1))


negloglik_grad = jax.jit(jax.grad(negloglik), static_argnames=("k", "C"))
negloglik_hess = jax.jit(jax.hessian(negloglik), static_argnames=("k", "C"))


def direct_mle(X, Xg, y, gate0, experts0):
    """Maximise the log-likelihood from (gate0 (k, pg), experts0 (k, C, p)).

    X (n, p), Xg (n, pg) designs with their intercept columns, y (n,) codes 0..C-1.
    Returns (loglik, gate (k, pg), experts (k, C, p)) with gate row 0 and class 0 at zero.
    """
    gate0, experts0 = np.asarray(gate0, float), np.asarray(experts0, float)
    k, C, p = experts0.shape
    pg = Xg.shape[1]
    args = (jnp.asarray(X, float), jnp.asarray(Xg, float), jnp.asarray(y, jnp.int32), k, C)
    th = np.concatenate([(gate0[1:] - gate0[:1]).ravel(), (experts0[:, 1:] - experts0[:, :1]).ravel()])
    f = lambda t: float(negloglik(jnp.asarray(t), *args))                        # noqa: E731
    g = lambda t: np.asarray(negloglik_grad(jnp.asarray(t), *args))                    # noqa: E731
    h = lambda t: np.asarray(negloglik_hess(jnp.asarray(t), *args))                    # noqa: E731
    r = minimize(f, th, jac=g, method="BFGS", options={"gtol": 1e-8, "maxiter": 10000})
    r = minimize(f, r.x, jac=g, hess=h, method="trust-exact", options={"gtol": 1e-10})
    G, A = _unpack(jnp.asarray(r.x), k, C, p, pg)
    return -float(r.fun), np.asarray(G), np.asarray(A)
