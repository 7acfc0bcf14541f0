"""Ready-made true models (data-generating truths) for simulation studies and tests."""
from . import multinomial_regimes

__all__ = ["multinomial_regimes"]
