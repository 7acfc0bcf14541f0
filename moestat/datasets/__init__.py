"""Bundled data sets.

``npreg``: flexmix's NPreg data (Gaussian, Poisson and binary responses; :func:`load_npreg`).

``sim_moe2``: 500 points simulated from a 2-expert Gaussian MoE with a softmax
gate (truth in ``sim_moe2_truth.json``), with the reference MLE and
observed-information standard errors from direct optimisation in R
(``sim_moe2_reference.json``).

Examples
--------
>>> import moestat as ms
>>> df = ms.datasets.load_sim_moe2()
>>> df.shape, list(df.columns[:2])
((500, 4), ['x', 'y'])
"""
from __future__ import annotations

import json
from importlib import resources

import pandas as pd


def _path(name: str):
    return resources.files(__name__).joinpath(name)


def load_sim_moe2() -> pd.DataFrame:
    """The simulated 2-expert data set: columns x, y, z (true expert, 1-based), gate_p2."""
    with _path("sim_moe2.csv").open("r") as fh:
        return pd.read_csv(fh)


def sim_moe2_reference() -> dict:
    """Reference MLE, standard errors and peer fits for ``sim_moe2``."""
    with _path("sim_moe2_reference.json").open("r") as fh:
        return json.load(fh)


def sim_moe2_truth() -> dict:
    """The true parameters ``sim_moe2`` was simulated from."""
    with _path("sim_moe2_truth.json").open("r") as fh:
        return json.load(fh)


# 3-expert Gaussian MoE with a softmax gate on x (expert 1 is the reference): experts own
# x < 0, 0 < x < 1 and x > 1 respectively.  Used by the model-selection checks (select_k, bootstrap LRT).
MOE3_TRUTH = {
    "gate": [[0.0, 0.0], [0.0, 3.0], [-3.0, 6.0]],      # (k, [intercept, x]) gate log-odds against expert 1
    "coef": [[2.0, 1.0], [0.0, -1.0], [-4.0, 3.0]],     # (k, [intercept, x]) expert means
    "sigma": [0.4, 0.4, 0.4],
}


def simulate_moe3(n: int = 600, seed: int = 0) -> pd.DataFrame:
    """Draw n points from the 3-expert Gaussian MoE ``MOE3_TRUTH`` (x ~ U(-2, 2)).

    Returns a DataFrame with columns x, y and z (the true expert, 1-based).
    Reproducible from ``seed`` (NumPy's stable streams).
    """
    import numpy as np
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 3]))
    x = rng.uniform(-2.0, 2.0, n)
    X = np.column_stack([np.ones(n), x])
    eta = X @ np.asarray(MOE3_TRUTH["gate"]).T
    p = np.exp(eta - eta.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    z = (rng.random(n)[:, None] > np.cumsum(p, 1)).sum(1)
    mu = (X @ np.asarray(MOE3_TRUTH["coef"]).T)[np.arange(n), z]
    y = mu + np.asarray(MOE3_TRUTH["sigma"])[z] * rng.standard_normal(n)
    return pd.DataFrame({"x": x, "y": y, "z": z + 1})


def load_npreg() -> pd.DataFrame:
    """flexmix's artificial NPreg data: 200 rows, two latent classes of 100, x ~ U(0, 10).

    Columns: ``x``; ``yn`` (Gaussian: 5x in class 1, 40 - (x - 5)^2 in class 2,
    plus N(0, 3^2) noise); ``yp`` (Poisson with mean exp(2 - 0.2x) / exp(1 + 0.1x));
    ``yb`` (Bernoulli with logit x - 5 / 5 - x); ``class`` (1, 2).  The classes
    do not depend on x.  This is the design of flexmix's ``ExNPreg(100)``
    (``set.seed(2602)``); the values are flexmix's ``data(NPreg)``, written to
    CSV by ``benchmarks/glm/flexmix_npreg_glm.R``, so fits here and in flexmix
    see the same numbers.

    Examples
    --------
    >>> import moestat as ms
    >>> ms.datasets.load_npreg().shape
    (200, 5)
    """
    with _path("npreg.csv").open("r") as fh:
        return pd.read_csv(fh)
