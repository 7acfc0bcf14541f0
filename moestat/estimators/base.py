"""The estimators: ``GaussianMoE`` (and the shared machinery of every MoE estimator).

An estimator holds the model specification (number of experts, gate family,
expert family, intercepts, variance bound); ``fit`` validates the data at the
door, runs EM from several starts in one compiled program, chooses the best
non-degenerate fit and returns a :class:`moestat.inference.results.MoEResults`.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

from .._parallel import threadpools
from ..fitting import em, pipeline, shortem
from .._jax import backend
from ..data.design import Design, build_design, family_design, make_data
from ..data.validation import check_float, check_int
from ..experts import get_expert
from ..fitting.starts import as_mask, as_params
from ..gating import get_gate


class MoEModel:
    """Shared machinery of the MoE estimators (see :class:`GaussianMoE`)."""

    _default_expert = "linear"

    def __init__(self, n_experts: int = 2, gating: Any = "softmax", expert: Any = None, *,
                 intercept: bool = True, gate_intercept: bool = True, min_variance: float | None = None,
                 ridge: float = 0.0):
        self.n_experts = check_int(n_experts, "n_experts", 1)
        self.gate = get_gate(gating)
        self.expert = get_expert(self._default_expert if expert is None else expert)
        self.intercept = bool(intercept)
        self.gate_intercept = bool(gate_intercept)
        self.min_variance = None if min_variance is None else check_float(min_variance, "min_variance", 0.0, True)
        self.ridge = check_float(ridge, "ridge")
        self._check_family()

    def _check_family(self):
        pass

    def __repr__(self):
        return "%s(n_experts=%d, gating=%r, expert=%r)" % (type(self).__name__, self.n_experts,
                                                           self.gate.name, self.expert.name)

    # ------------------------------------------------------------------ set-up
    def design(self, X, y=None, gate_X=None, weights=None, data=None) -> Design:
        """Validate and encode the inputs (intercepts added unless switched off)."""
        if isinstance(X, Design):  # already encoded: select_k / bootstrap LRT refit the same data with another k
            if y is not None or gate_X is not None or weights is not None or data is not None:
                raise ValueError("pass either an encoded Design or raw inputs, not both")
            self.gate.validate(self.n_experts, X.Xg.shape[1])
            return X
        d = build_design(X, y, gate_X, weights, data, intercept=self.intercept,
                         gate_intercept=self.gate_intercept, gate_transform=self.gate.transform,
                         y_check=self.expert.check_y)
        d = family_design(d, self.gate, self.expert)  # e.g. the Gaussian gate models the raw covariates
        self.gate.validate(self.n_experts, d.Xg.shape[1])
        self.gate.validate_design(d.gate_block.names, d.gate_block.intercept)
        return d

    def n_params(self, p: int, pg: int) -> int:
        k = self.n_experts
        return self.gate.n_free_params(k, pg) + self.expert.n_free_params(k, p)

    def config(self, max_iter: int = 2000, algorithm: str = "em") -> em.EMConfig:
        return em.EMConfig(gate=self.gate, expert=self.expert, k=self.n_experts, max_iter=max_iter,
                           algorithm=algorithm)

    def control(self, info: dict, tol: float = 1e-8) -> em.EMControl:
        floor = self.min_variance if self.min_variance is not None else 1e-8 * info.get("var_y", 1.0)
        return em.make_control(tol=tol, var_floor=floor, ridge=self.ridge)

    def base_params(self, p: int, pg: int, info: dict) -> em.MoEParams:
        """Neutral parameters (host arrays) that responsibility starts begin from (:func:`moestat.fitting.pipeline.initial_params`)."""
        return pipeline.initial_params(self.gate, self.expert, self.n_experts, p, pg, info)[0]

    # ------------------------------------------------------------------ fit
    def fit(self, X, y=None, gate_X=None, weights=None, *, data=None, n_init: int = 10, seed: int = 0,
            init: Any = None, tol: float = 1e-8, max_iter: int = 2000, algorithm: str = "em",
            fixed: dict | None = None, prefer_nondegenerate: bool = True, polish: bool = True,
            batch_size: int | None = None, groups: Any = None, record_gate: bool = False,
            finalists: int | None = 2, accelerate: bool = False):
        """Fit by EM from ``n_init`` starts; the best log-likelihood among non-degenerate fits wins.

        Parameters
        ----------
        X : array (n,) or (n, d), DataFrame, or a formula ``"y ~ x1 + x2"`` (with ``data``)
            Expert covariates.  An intercept is added unless the model says not
            (or the formula removes it).
        y : array (n,), optional when X is a formula with a response
        gate_X : array, DataFrame or one-sided formula ``"~ z"``; default: the expert covariates
        weights : array (n,), optional
            Non-negative case (frequency) weights; a weight of 0 removes the row.
        data : DataFrame, needed with formulas
        n_init : int
            Number of starts (ignored when ``init`` gives one explicit start).
            With more starts than ``finalists``, every start first runs a short
            EM (stopped at relative tolerance
            :data:`moestat.fitting.shortem.SCREEN_TOL`) and only the best
            distinct ones continue to ``tol`` (see ``finalists``).
        seed : int
            Seed of the starting values (and of SEM's draws).
        init : None, "kmeans", "random", "random_centers", labels (n,), responsibilities (n, k),
            or parameters (``MoEParams`` or a results object)
        tol : float
            Stop when the log-likelihood rises by at most ``tol * |loglik|`` in one iteration.
        max_iter : int
        algorithm : "em", "cem" (hard assignments) or "sem" (sampled assignments)
            "cem" maximises the classification likelihood and stops at a fixed
            point of hard labels.  "sem" draws the labels from the posterior at
            each of ``max_iter`` iterations (no convergence test, so
            ``converged`` is False) and reports, per start, the visited
            parameters with the highest observed log-likelihood; the draws are
            reproducible from ``seed``.  Neither is polished to the MLE.
        fixed : dict, optional
            Parameters held at their starting values, e.g. ``{"gate": True}`` or
            ``{"coef": mask (k, p), "sigma2": mask (k,)}``; needs ``init`` parameters.
        prefer_nondegenerate : bool
            Skip starts that end at a spurious maximum (an expert with a few
            points and a tiny variance) when a non-degenerate start exists.
        polish : bool
            Finish the best EM fit with Levenberg-damped Newton steps on the
            observed log-likelihood (each step must raise it), so that the
            reported estimate is the MLE to machine precision rather than to
            the EM tolerance.  EM only; skipped for degenerate fits.
        batch_size : int, optional
            Starts run ``batch_size`` at a time (vectorised); default 1 on CPU, all on GPU.
        groups : array-like (n,) of labels, or a column name of ``data``, optional
            Grouped observations (flexmix's ``y ~ x | id``): all rows of a group
            share one latent expert, and the log-likelihood is
            sum_g w_g log sum_i g_i(z_g) prod_{n in g} f_i(y_n | x_n).  Gate
            covariates and weights must be constant within each group (the
            weight is the group's weight).  AIC/BIC/ICL then count groups, as
            flexmix does (``nobs`` = sum of group weights); the degrees of
            freedom are unchanged.  Not available with joint (Gaussian) gates or
            ``algorithm="sem"``.  See docs/grouped.md.
        record_gate : bool
            Keep the gate parameters of every EM iteration (a (max_iter, gate size)
            record, NaN after the stop; off by default) so that
            ``res.routing_report()`` adds router saturation and change rate per
            iteration (:mod:`moestat.routing`).  The routing sets are computed
            afterwards on the data, not inside the loop.
        finalists : int or None
            Short EM before full EM (emEM; EM only): every start runs until the
            log-likelihood rises by less than ``SCREEN_TOL * |loglik|`` per
            iteration; the ``finalists`` best screened fits whose MAP
            partitions differ (agree on < 99 % of the points), non-degenerate
            ones first, continue to ``tol``, and the best of them is reported
            (more continue while none of them is non-degenerate).
            ``res.restarts`` lists every start: ``finalist`` marks the continued
            ones, the others keep their short run.  ``None`` runs every start to
            ``tol`` (a full EM run from every start).
            ``max_iter`` bounds the short run and the continued run separately.
        accelerate : bool
            EM accelerated by SQUAREM (EM only; :func:`moestat.fitting.em._fit_one_squarem`):
            two EM steps, an extrapolation along them and a stabilising EM step per
            cycle, monotone.  Worth it where EM crawls (over-fitted models, flat
            ridges of the likelihood: same tolerance in a fraction of the EM steps);
            ``max_iter`` then bounds EM steps, 3 per cycle.
        """
        n_init = check_int(n_init, "n_init", 1)
        seed = check_int(seed, "seed", 0)
        max_iter = check_int(max_iter, "max_iter", 1)
        tol = check_float(tol, "tol")
        if finalists is not None:
            finalists = check_int(finalists, "finalists", 1)
        if algorithm not in em.ALGORITHMS:
            raise ValueError("algorithm must be one of %s, got %r" % (", ".join(map(repr, em.ALGORITHMS)), algorithm))
        if not isinstance(accelerate, (bool, np.bool_)):
            raise TypeError("accelerate must be True or False, got %r" % (accelerate,))
        if accelerate and algorithm != "em":
            raise ValueError("accelerate=True (SQUAREM) needs algorithm='em', got algorithm=%r" % algorithm)
        design = self.design(X, y, gate_X, weights, data)
        if groups is not None or design.group_codes is not None:
            self._attach_groups(design, groups, data, algorithm)
        k = self.n_experts
        n, p = design.X.shape
        pg = design.Xg.shape[1]
        n_par = self.n_params(p, pg)
        if design.n_eff <= n_par:
            raise ValueError("too few observations: %d rows with positive weight for a model with %d free "
                             "parameters (k=%d experts, %d expert and %d gate columns)"
                             % (design.n_eff, n_par, k, p, pg))
        if design.n_eff < k:
            raise ValueError("too few observations (%d) for k=%d experts" % (design.n_eff, k))
        info = self.expert.prepare(design.y, design.w)
        info["n_total"] = float(design.w.sum())
        cfg = em.with_intercepts(self.config(max_iter, algorithm), design.X, design.Xg, design.w)
        ctl = self.control(info, tol)
        dat = make_data(design.X, design.Xg, self.expert.encode_y(design.y, info), design.w,  # class codes
                        groups=design.group_codes)  # None: ungrouped
        base = self.base_params(p, pg, info)
        free = pipeline.initial_params(self.gate, self.expert, k, p, pg, info)[1]
        fixed_mask = self._fixed_mask(fixed, base, init)
        bs = batch_size if batch_size is not None else (1 if backend() == "cpu" else n_init)
        with threadpools().limit(limits=1):
            starts = self._starts(init, design, dat, base, ctl, fixed_mask, cfg, n_init, seed, bs)
            # results keep cfg (refits, bootstrap): the run's recording and acceleration are per fit
            run_cfg = dataclasses.replace(cfg, record_gate=bool(record_gate), accelerate=bool(accelerate))
            if (finalists is not None and algorithm == "em" and isinstance(starts, np.ndarray)
                    and starts.shape[0] > finalists):   # responsibility starts: short EM, then the finalists
                est = shortem.estimate_screened(starts, base, dat, ctl, fixed_mask, cfg, info, finalists=finalists,
                                                n_live=design.n, screen_tol=shortem.SCREEN_TOL, seed=seed,
                                                prefer_nondegenerate=prefer_nondegenerate,
                                                polish_fit=polish, free=free, batch_size=bs, run_cfg=run_cfg)
            else:
                est = pipeline.estimate(starts, dat, ctl, fixed_mask, cfg, info, seed=seed, base=base,
                                        prefer_nondegenerate=prefer_nondegenerate, polish_fit=polish, free=free,
                                        batch_size=bs, run_cfg=run_cfg)
        res = self._results_class()(model=self, design=design, data=dat, cfg=cfg, ctl=ctl, info=info,
                         fit=est.fit, restarts=self._restart_table(est), best=est.best, n_polish=est.n_polish,
                         fixed=fixed_mask, seed=seed, all_params=est.runs.params,
                         em_expert_weights=np.asarray(est.n_eff)[est.best])
        res.gate_trace = est.fit.gate_trace   # (record_gate) the reported start's gate per EM iteration, else None
        res.restart_traces = np.asarray(est.runs.trace)   # (n_starts, max_iter) EM paths of every start, NaN after each stop
        res._warn_about_fit()
        return res

    # ------------------------------------------------------------------ helpers
    def _attach_groups(self, design, groups, data, algorithm):
        """Validate ``groups`` and store the group codes on the design."""
        from ..data.design import check_constant_in_groups, group_codes
        if self.gate.joint:
            raise ValueError("groups are not supported with the %r gate (its likelihood is joint in the "
                             "covariates); use a conditional gate such as 'softmax'" % self.gate.name)
        if self.gate.moves_on_observed:
            raise ValueError("groups are not supported with the %r gate (its re-routing step judges the "
                             "ungrouped likelihood)" % self.gate.name)
        if algorithm == "sem":
            raise ValueError("groups are not supported with algorithm='sem'; use 'em' or 'cem'")
        if groups is not None:   # else an encoded Design refitted (select_k, bootstrap LRT): keep its groups
            if design.group_codes is not None:
                raise ValueError("the encoded design already has groups: do not pass groups again")
            codes, labels = group_codes(groups, design.n, data)
            check_constant_in_groups(design.Xg, codes, labels, "the gate covariates")
            check_constant_in_groups(design.w, codes, labels, "the weights")
            design.group_codes, design.group_labels = codes, labels
        if design.n_groups < self.n_experts:
            raise ValueError("too few groups (%d) for k=%d experts" % (design.n_groups, self.n_experts))

    def _results_class(self):
        """The results type this estimator returns (MultinomialMoE returns MultinomialResults)."""
        from ..inference.results import MoEResults
        return MoEResults

    def _fixed_mask(self, fixed, base, init):
        mask = em.no_fixed(base)
        if not fixed:
            return mask
        if not isinstance(fixed, dict):
            raise TypeError("fixed must be a dict such as {'gate': True} or {'coef': mask}, got %s"
                            % type(fixed).__name__)
        if init is None or isinstance(init, str) or isinstance(init, np.ndarray):
            raise ValueError("fixed parameters need starting values: pass init=parameters (or a results object)")
        gate, expert = mask.gate, mask.expert
        for key, val in fixed.items():
            if key == "gate":
                gate = jax.tree_util.tree_map(lambda a: as_mask(val, a, "fixed['gate']"), gate)
            elif key == "expert":
                expert = jax.tree_util.tree_map(lambda a: as_mask(val, a, "fixed['expert']"), expert)
            elif key in expert._fields:
                expert = expert._replace(**{key: as_mask(val, getattr(expert, key), "fixed[%r]" % key)})
            elif key in gate._fields:
                gate = gate._replace(**{key: as_mask(val, getattr(gate, key), "fixed[%r]" % key)})
            else:
                raise ValueError("fixed has unknown key %r; use 'gate', 'expert' or one of %s"
                                 % (key, ", ".join(expert._fields + gate._fields)))
        return em.MoEParams(gate=gate, expert=expert)

    def _starts(self, init, design, dat, base, ctl, fixed, cfg, n_init, seed, bs):
        """Starting values: parameters stacked on a leading axis, or padded responsibilities (S, k, N)."""
        params = as_params(init, base)
        if params is not None:
            return jax.tree_util.tree_map(lambda a: np.asarray(a)[None], params)
        R = pipeline.start_responsibilities(self.gate, self.expert, design.X, design.y, design.w, self.n_experts,
                                            n_init, seed, init, design.group_codes)
        return pipeline.pad_responsibilities(R, dat.w.shape[0])

    @staticmethod
    def _restart_table(est) -> dict:
        """Columns of one row per start: log-likelihood, convergence, iterations, degeneracy, smallest expert
        weight, whether it ran to the full tolerance (``finalist``) and the start whose full run stands for it
        (``basin``); the results object makes them a DataFrame when asked (``res.restarts``)."""
        runs = est.runs
        S = est.degenerate.size
        return {"start": np.arange(S), "loglik": np.asarray(runs.loglik, dtype=float).reshape(S),
                "converged": np.asarray(runs.converged, dtype=bool).reshape(S),
                "n_iter": np.asarray(runs.n_iter).astype(np.int64).reshape(S),
                "degenerate": np.asarray(est.degenerate, dtype=bool),
                "min_expert_weight": np.asarray(est.n_eff, dtype=float).reshape(S, -1).min(axis=1),
                "finalist": np.ones(S, dtype=bool) if est.finalist is None else np.asarray(est.finalist, dtype=bool),
                "basin": np.arange(S) if est.basin is None else np.asarray(est.basin).astype(np.int64)}
