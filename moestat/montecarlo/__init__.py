"""The Monte Carlo convergence-rate harness.

Simulate from a true mixture of experts, fit, measure the losses, repeat over
replicates and sample sizes, fit the slope -- reproducibly, resumably, on a
laptop, a process pool or a Dask cluster.  Command line: ``moestat reproduce``.

>>> from moestat.montecarlo import run_experiment        # doctest: +SKIP
>>> res = run_experiment("demystifying-k2", quick=True)   # doctest: +SKIP
>>> res.slopes[["loss", "slope", "ci_low", "ci_high"]]   # doctest: +SKIP
"""
from .runner import RunExistsError, RunResult, analyse, run_experiment
from .spec import Spec, available_specs, load_spec
from .store import Store, StoreError

__all__ = ["RunExistsError", "RunResult", "Spec", "Store", "StoreError", "analyse", "available_specs", "load_spec",
           "run_experiment"]
