"""Ready-made true models (data-generating truths) for simulation studies and tests.

Examples
--------
>>> from moestat.truths import multinomial_regimes as mr
>>> x, y, z = mr.simulate_regime(200, regime=2, seed=0)
>>> x.shape, sorted(set(y.tolist()))
((200, 2), [0, 1, 2])
"""
from . import deepseek, multinomial_regimes
from .truth import TrueModel

__all__ = ["TrueModel", "deepseek", "multinomial_regimes"]
