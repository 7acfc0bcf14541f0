"""Module-level tasks for process pools and Dask workers (importable in a fresh interpreter)."""
from __future__ import annotations

import numpy as np
import pandas as pd


def formula_frame(n: int = 300, seed: int = 3) -> pd.DataFrame:
    """Two-regime data with a categorical covariate and a separate gate covariate."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    z = rng.normal(size=n)
    g = rng.choice(["a", "b", "c"], size=n)
    zz = (rng.random(n) < 1 / (1 + np.exp(-3 * z))).astype(int)
    y = np.where(zz == 1, 1 + 2 * x, -1 - 2 * x) + 0.3 * (g == "b") + 0.4 * rng.normal(size=n)
    return pd.DataFrame({"y": y, "x": x, "z": z, "g": g}, index=np.arange(100, 100 + n))


def fit_formula(n_init: int = 2):
    """A formula fit (categorical term, stateful transform, gate formula) -- returned across processes."""
    import moestat as ms
    return ms.GaussianMoE(2).fit("y ~ center(x) + C(g)", gate_X="~ z", data=formula_frame(), n_init=n_init)
