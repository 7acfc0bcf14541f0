"""Saving and loading fitted results (pickle), as statsmodels' ``results.save`` / ``load``.

Results pickle with everything they need to predict, summarise and compute
standard errors again.  Formula fits keep the fitted data's formula columns
(:class:`moestat.data.Block`), from which patsy's design specification, which
does not pickle, is rebuilt on loading, so new data are encoded exactly as at
fit time (categorical levels, stateful transforms such as ``center(x)``).
Device arrays travel as NumPy arrays, so a result saved on a GPU loads on a CPU.
"""
from __future__ import annotations

import os
import pickle
from typing import Any

import jax
import numpy as np

#: cached attributes that are recomputed after loading rather than pickled
_RECOMPUTED = ("_device_params",)


def results_state(res) -> dict:
    """The pickled state of a results object: its attributes, device arrays as NumPy arrays."""
    state = {k: v for k, v in res.__dict__.items() if k not in _RECOMPUTED}
    for key in ("_data", "_ctl", "_all_params", "fixed"):
        if state.get(key) is not None:
            state[key] = jax.tree_util.tree_map(np.asarray, state[key])
    return state


def save(res: Any, path) -> None:
    """Pickle ``res`` to ``path`` (highest protocol)."""
    with open(os.fspath(path), "wb") as fh:
        pickle.dump(res, fh, protocol=pickle.HIGHEST_PROTOCOL)


def load(path) -> Any:
    """Load results saved with ``res.save(path)``.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    MoEResults (or the subclass that was saved)

    Examples
    --------
    >>> import os, tempfile
    >>> import moestat as ms
    >>> res = ms.GaussianMoE(2).fit("y ~ x", data=ms.datasets.load_sim_moe2())
    >>> path = os.path.join(tempfile.mkdtemp(), "fit.pickle")
    >>> res.save(path)
    >>> ms.load(path).llf == res.llf
    True

    Notes
    -----
    Unpickling runs code named in the file: load only files you trust.
    """
    with open(os.fspath(path), "rb") as fh:
        return pickle.load(fh)
