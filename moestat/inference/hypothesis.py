"""Linear hypotheses on the reported estimates: ``t_test`` and ``wald_test`` as statsmodels offers them.

The estimates are the rows of ``res.params`` (block, expert, term), named
``"<block><expert>:<term>"`` in constraints, e.g. ``"expert1:x = expert2:x"``
(equal slopes) or ``"gate2:z = 0"``; ``res.param_names`` lists the names.
Constraints are parsed by patsy's public linear-constraint parser (as
statsmodels does); the covariance is the observed-information covariance of
:mod:`moestat.inference`, and the statistics are large-sample (normal / chi2),
as for every maximum-likelihood model in statsmodels with ``use_t=False``.
"""
from __future__ import annotations

import numpy as np


def param_names(rows) -> list[str]:
    """Flat names ``"<block><expert>:<term>"`` of the rows (block, expert, term) of a params frame."""
    return ["%s%d:%s" % (b, int(e), t) for b, e, t in zip(rows["block"], rows["expert"], rows["term"])]


def constraint_matrices(r_matrix, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(R (m, P), q (m,)) from a constraint string, list of strings, array R, or tuple (R, q).

    Raises ValueError naming the problem (unknown parameter name, wrong width).
    """
    import patsy
    if isinstance(r_matrix, tuple) and len(r_matrix) == 2 and not isinstance(r_matrix[0], str):
        R, q = np.atleast_2d(np.asarray(r_matrix[0], dtype=float)), np.asarray(r_matrix[1], dtype=float).ravel()
    elif isinstance(r_matrix, (str, list, dict)) and not (isinstance(r_matrix, list) and r_matrix
                                                           and not isinstance(r_matrix[0], str)):
        try:
            lc = patsy.DesignInfo(names).linear_constraint(r_matrix)
        except patsy.PatsyError as exc:
            raise ValueError("cannot parse the constraint %r: %s; parameter names are %s"
                             % (r_matrix, str(exc).splitlines()[0], ", ".join(names))) from None
        R, q = np.asarray(lc.coefs, dtype=float), np.asarray(lc.constants, dtype=float).ravel()
    else:
        R = np.atleast_2d(np.asarray(r_matrix, dtype=float))
        q = np.zeros(R.shape[0])
    if R.shape[1] != len(names):
        raise ValueError("the constraint matrix has %d columns, but there are %d parameters (%s)"
                         % (R.shape[1], len(names), ", ".join(names)))
    if q.shape[0] != R.shape[0]:
        raise ValueError("the constraint matrix has %d rows but %d constant(s)" % (R.shape[0], q.shape[0]))
    return R, q


def _restricted(res, r_matrix):
    R, q = constraint_matrices(r_matrix, res.param_names)
    est = res.params.to_numpy()
    V = res.cov_params().to_numpy()
    used = np.any(R != 0, axis=0)
    if not np.all(np.isfinite(V[np.ix_(used, used)])):
        bad = [n for n, u, ok in zip(res.param_names, used, np.isfinite(np.diag(V))) if u and not ok]
        raise ValueError("the constraint involves parameters without a standard error (%s): see the "
                         "InferenceWarning of the fit" % ", ".join(bad))
    Ru = R[:, used]
    return Ru @ est[used] - q, R @ est, Ru @ V[np.ix_(used, used)] @ Ru.T


def t_test(res, r_matrix, alpha: float = 0.05):
    """Wald z-test of each row of R theta = q (see :meth:`moestat.MoEResults.t_test`)."""
    from statsmodels.stats.contrast import ContrastResults
    diff, effect, V = _restricted(res, r_matrix)
    sd = np.sqrt(np.diag(V))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = diff / sd
    return ContrastResults(effect=effect, statistic=z, sd=sd, df_denom=None, distribution="norm", alpha=alpha)


def wald_test(res, r_matrix):
    """Joint Wald chi2 test of R theta = q (see :meth:`moestat.MoEResults.wald_test`)."""
    from statsmodels.stats.contrast import ContrastResults
    diff, _, V = _restricted(res, r_matrix)
    J = int(np.linalg.matrix_rank(V))
    if J < V.shape[0]:
        raise ValueError("the %d constraints are linearly dependent (rank %d): drop the redundant ones"
                         % (V.shape[0], J))
    chi2 = float(diff @ np.linalg.solve(V, diff))
    return ContrastResults(chi2=chi2, df_denom=J, statistic=chi2, distribution="chi2", distargs=(J,))
