"""Every warning class of moestat (one place, imported by every layer).

Errors are the built-in ``ValueError``/``TypeError`` for bad input; the
harness's store and run errors live with the harness
(:class:`moestat.montecarlo.store.StoreError`, :class:`moestat.montecarlo.runner.RunExistsError`).
"""
from __future__ import annotations


class MoEWarning(UserWarning):
    """A fit finished but something about it deserves the user's attention (base of moestat's warnings).

    Examples
    --------
    >>> import warnings, moestat as ms
    >>> issubclass(ms.ConvergenceWarning, ms.MoEWarning), issubclass(ms.MoEWarning, UserWarning)
    (True, True)
    >>> warnings.simplefilter("ignore", ms.MoEWarning)   # silence every moestat fit warning
    """


class ConvergenceWarning(MoEWarning):
    """EM stopped at max_iter before meeting the tolerance.

    Examples
    --------
    >>> import warnings, moestat as ms
    >>> df = ms.datasets.load_sim_moe2()
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     res = ms.GaussianMoE(2).fit("y ~ x", data=df, n_init=2, max_iter=2, polish=False)
    >>> any(issubclass(w.category, ms.ConvergenceWarning) for w in caught), res.converged
    (True, False)
    """


class DegenerateFitWarning(MoEWarning):
    """A start (or the reported fit) sits at a spurious, degenerate maximum.

    Degenerate: an expert carries few effective points or a tiny variance.
    Which starts were degenerate is in ``res.restarts["degenerate"]``.

    Examples
    --------
    >>> import moestat as ms
    >>> issubclass(ms.DegenerateFitWarning, ms.MoEWarning)
    True
    """


class RestartWarning(MoEWarning):
    """Only one of several starts reached the best log-likelihood: more starts may find a higher maximum.

    Raised (as a warning) after a fit with several starts when
    ``res.n_best_starts == 1``; ``res.restarts`` lists every start's
    log-likelihood.  Filter it like any warning, or refit with a larger ``n_init``.

    Examples
    --------
    >>> import warnings, moestat as ms
    >>> issubclass(ms.RestartWarning, ms.MoEWarning)
    True
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     res = ms.GaussianMoE(2).fit("y ~ x", data=ms.datasets.load_sim_moe2(), n_init=2)
    >>> warned = any(issubclass(w.category, ms.RestartWarning) for w in caught)
    >>> warned == (res.n_best_starts == 1)
    True
    """


class InferenceWarning(MoEWarning):
    """Standard errors or a bootstrap may be unreliable (singular information, boundary, failed replicates).

    Examples
    --------
    >>> import moestat as ms
    >>> issubclass(ms.InferenceWarning, ms.MoEWarning)
    True
    """


class FewerExpertsWarning(MoEWarning):
    """The training data identify fewer experts than ``n_experts``; the fit uses fewer (``n_experts_``)."""


__all__ = ["ConvergenceWarning", "DegenerateFitWarning", "FewerExpertsWarning", "InferenceWarning", "MoEWarning",
           "RestartWarning"]
