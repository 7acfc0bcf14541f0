"""Bundled data sets.

``sim_moe2``: 500 points simulated from a 2-expert Gaussian MoE with a softmax
gate (truth in ``sim_moe2_truth.json``), with the reference MLE and
observed-information standard errors from direct optimisation in R
(``sim_moe2_reference.json``).
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
