"""The gate interface shared by every gating family.

A gate is a small frozen (hashable) dataclass: its fields are the gate's
*settings* (e.g. top-K's K, a temperature schedule), static under ``jax.jit``;
its *parameters* are a PyTree (a NamedTuple of arrays) passed to pure methods.
A new gate is one new module in ``moestat/gating/`` that subclasses
:class:`Gate` and registers itself with :func:`register`.  Every method and
attribute that the EM loop, the sampler, the inference and the Monte Carlo
harness use is declared here, abstract or with a default
(``docs/extending.md`` lists them).

Shapes: ``Xg (pg, N)`` features-major gate design (row 0 = intercept when the
model has one); ``tau (k, N)`` responsibilities; ``w (N,)`` case weights with 0
on padding.
"""
from __future__ import annotations

import abc

from dataclasses import dataclass
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from .._math import klog_softmax
from .._registry import Registry

_REGISTRY = Registry("gating", "moestat.gating gate object", "unknown gating", "a gate object")


def register(cls):
    """Class decorator: make a gate available as ``gating="<cls.name>"``."""
    return _REGISTRY.register(cls)


def available() -> list[str]:
    return _REGISTRY.available()


def get_gate(gating: Any) -> "Gate":
    """A gate object from a name (``"softmax"``) or a gate instance."""
    return _REGISTRY.get(gating, Gate)


@dataclass(frozen=True)
class Gate(abc.ABC):
    """Base class of the gating families (see the module docstring for shapes)."""

    name: ClassVar[str] = "gate"
    #: True when the E-step terms are joint log densities log pi_i N(x | ...) (Gaussian gate):
    #: the log-likelihood is then that of (x, y), not of y given x.
    joint: ClassVar[bool] = False
    #: True when parameters are identified only up to a common translation (softmax).
    translation_invariant: ClassVar[bool] = False
    #: False when the gate models the raw covariates and takes no intercept column
    #: (Gaussian gate); the model then drops the intercept from the gate design.
    uses_intercept: ClassVar[bool] = True
    #: True when starting values keep the gate at :meth:`init_params` instead of fitting it to
    #: the starting partitions (:func:`moestat.fitting.em.params_from_resp`); EM's first gate M-step then sees the
    #: soft responsibilities of the partition-fitted experts.  For gates that a hard partition drives onto a
    #: flat part of their likelihood (normalized sigmoid: its softmax limit).
    hold_in_starts: ClassVar[bool] = False
    #: True when EM may take the gate M-step as ONE unguarded Newton step whose guard is checked in the next
    #: E-step's pass (:func:`moestat.fitting.em.fit_one`): the E-step computes the gate at the candidate anyway.
    #: A gate that sets it provides :meth:`direction`, :meth:`moment_rows`, :meth:`direction_from_moments`,
    #: :meth:`scores_and_probs` and :meth:`objective_from_moments`.
    speculative: ClassVar[bool] = False
    #: True when the gate's log-weights are exactly log softmax(coef @ Xg) of its own parameters (the plain
    #: softmax, not a subclass that transforms the design): the Newton polish then takes the log-likelihood's
    #: derivatives in closed form through the per-point scores
    #: (:func:`moestat.fitting.parametrization._softmax_gaussian_derivatives`).
    softmax_scores: ClassVar[bool] = False
    #: True when :meth:`observed_step` moves the gate (top-K's re-routing).  Such moves are judged on the
    #: ungrouped observed log-likelihood, so fits with ``groups`` refuse these gates.
    moves_on_observed: ClassVar[bool] = False
    #: True when :meth:`transform` maps the raw gate covariates to other features (modified softmax), so
    #: the gate design does not hold the raw covariates.
    transforms_covariates: ClassVar[bool] = False

    # ---- host-side set-up ------------------------------------------------------------
    def validate(self, k: int, pg: int) -> None:
        """Raise ValueError for settings that cannot work with k experts and pg gate columns."""

    def validate_design(self, names: list[str], intercept: bool) -> None:
        """Raise ValueError when the gate design does not suit this gate (default: any design).

        ``intercept`` says whether column 0 of the gate design is
        the intercept; gates that treat the intercept apart from the slopes
        (activation gate, top-K ranked on slopes, estimated temperature) need it.
        """

    def transform(self, Z: np.ndarray) -> np.ndarray:
        """Map the raw gate covariates (n, d), intercept excluded, to the gate features."""
        return Z

    # ---- parameters ------------------------------------------------------------------
    @abc.abstractmethod
    def init_params(self, k: int, pg: int):
        """Neutral starting parameters (equal weights)."""

    @abc.abstractmethod
    def n_free_params(self, k: int, pg: int) -> int:
        ...

    def unconstrain(self, params):
        """Map parameters to an unconstrained space (e.g. variances to log-variances)."""
        return params

    def constrain(self, u):
        """Inverse of :meth:`unconstrain`."""
        return u

    def canonical(self, params):
        """The identified representative of ``params`` (e.g. reference expert 0 = 0)."""
        return params

    def arrange_starts(self, R: np.ndarray) -> np.ndarray:
        """Reorder the expert rows of starting responsibilities R (n_starts, k, n).

        Default: as they are.  Gates whose experts are not exchangeable (shared
        vs routed experts) use it to try each cluster in each role.
        """
        return R

    # ---- kernels ---------------------------------------------------------------------
    @abc.abstractmethod
    def log_weights(self, params, Xg):
        """(k, N) log gating probabilities log g_i(x_n), normalised over i."""

    def e_step_terms(self, params, Xg):
        """(k, N) terms added to the expert log densities in the E-step.

        Conditional gates return :meth:`log_weights`; the joint Gaussian gate
        returns log pi_i + log N(x | c_i, Gamma_i).
        """
        return self.log_weights(params, Xg)

    @abc.abstractmethod
    def m_step(self, params, tau, Xg, w, ctl, max_halvings: int, fixed, log_w=None):
        """Parameters that do not lower sum_n w_n sum_i tau_in log g_i(x_n) (a GEM step).

        ``log_w`` (k, N), when given, is :meth:`e_step_terms` at ``params`` from
        the E-step (for conditional gates, the log gate probabilities): a gate
        may reuse it instead of recomputing (XLA does not merge the two).
        """

    def observed_step(self, params, data, cfg, ctl, max_halvings: int, fixed_gate):
        """Optional extra move of the gate, judged on the observed log-likelihood (default: none).

        Called by the EM loop after the gate and expert M-steps
        with the full parameters (``moestat.fitting.em.MoEParams``) and the data; it must
        return parameters whose log-likelihood is not lower, so that EM stays
        monotone.  Top-K uses it to re-route points, which no step on the
        M-step objective can do.
        """
        return params

    def log_weights_and_probs(self, params, Xg):
        """The log gate weights and the weights, both (k, N).

        Default: :meth:`log_weights` and its exponential.  The softmax gate
        overrides it to take both from one set of k exponentials.
        """
        lw = self.log_weights(params, Xg)
        return lw, jnp.exp(lw)

    def direction(self, params, tau, Xg, w, ctl, fixed, log_w):
        """The unguarded Newton direction of the gate M-step and the gate objective at ``params``.

        Used only when :attr:`speculative` is True: EM adds the direction and
        checks the candidate in the next E-step.

        Parameters
        ----------
        params : gate parameters
        tau : array (k, N), responsibilities
        Xg : array (pg, N), gate design
        w : array (N,), case weights (0 on padding)
        ctl : EMControl
        fixed : bool PyTree like ``params``, True for fixed entries
        log_w : array (k, N), :meth:`log_weights` at ``params``

        Returns
        -------
        direction : PyTree like ``params`` (0 on fixed entries)
        objective : scalar, sum_n w_n sum_i tau_in log g_i(x_n) at ``params``
        """
        raise TypeError("the %r gate is not speculative: EM takes its M-step with m_step(), not direction()"
                        % self.name)

    def moment_rows(self, probs, tau, w):
        """(r, N) per-point rows whose moments against the gate design give the Newton statistics.

        Used only when :attr:`speculative` is True and the experts have a
        moment M-step (:attr:`moestat.experts.base.Expert.moment_design`):
        EM contracts the rows with the products of the gate design's columns
        (:mod:`moestat.fitting.moments`) and hands the moments to
        :meth:`direction_from_moments`.  ``probs`` (k, N) are the gate
        weights from :meth:`log_weights_and_probs`.
        """
        raise TypeError("the %r gate is not speculative: it has no moment form of its Newton statistics"
                        % self.name)

    def direction_from_moments(self, params, linear, gram, ctl, fixed):
        """:meth:`direction` (without the objective) from the moments of :meth:`moment_rows`.

        linear (r, pg) and gram (r, pg, pg): the rows' sums against x and x x'
        (:func:`moestat.fitting.moments.split`).
        """
        raise TypeError("the %r gate is not speculative: it has no moment form of its Newton statistics"
                        % self.name)

    def scores_and_probs(self, params, Xg):
        """(eta (k, N), lse (N,), g (k, N)): scores, their log normaliser and the gate weights, log g = eta - lse.

        Used only when :attr:`speculative` is True: the guard of the speculative
        Newton step needs sum_n w_n lse_n at the candidate (:meth:`objective_from_moments`).
        """
        raise TypeError("the %r gate is not speculative: it has no score / normaliser split" % self.name)

    def objective_from_moments(self, params, T, lse_sum):
        """The gate objective sum_n w_n sum_i tau_in log g_i(x_n) from T_i = sum_n w_n tau_in x_n (k, pg)
        and lse_sum = sum_n w_n lse_n of :meth:`scores_and_probs` (responsibilities summing to one).

        Used only when :attr:`speculative` is True.
        """
        raise TypeError("the %r gate is not speculative: its objective is not linear in the responsibilities' "
                        "moments" % self.name)

    def start_guess_from_moments(self, total, linear, gram):
        """A closed-form guess of the gate M-step's optimum on fixed responsibilities, or None (no guess).

        Used only when :attr:`speculative` is True and the gate design's row 0 is an intercept: the start's
        Newton steps (:func:`moestat.fitting.em.start_from_resp`) begin at the guess instead of the neutral
        parameters when it is finite and does not lower the objective (the optimum is the same, reached
        in fewer passes over the data).

        Parameters
        ----------
        total : (k,) sum_n w_n tau_in; linear : (k, pg) sum_n w_n tau_in x_n;
        gram : (k, pg, pg) sum_n w_n tau_in x_n x_n' (x_n0 = 1)

        Returns
        -------
        gate parameters, or None
        """
        return None

    def may_stop(self, params):
        """Whether EM may stop at ``params`` (default: always).

        A gate whose settings change by design across
        iterations (a temperature schedule) returns False until they have
        settled, so that the tolerance does not end EM half-way.
        """
        return True

    # ---- presentation / inference ----------------------------------------------------
    @abc.abstractmethod
    def describe(self, params, names: list[str]) -> list[tuple[int, str, float]]:
        """[(expert, term, estimate), ...] for the identified gate parameters (expert 0-based)."""

    @abc.abstractmethod
    def free_mask(self, params):
        """PyTree of booleans like params: True for free (identified) entries."""

    # ---- inference (moestat.inference) ---------------------------------------------
    #: Title of the gate's coefficient table in ``summary()``.
    summary_title: ClassVar[str] = "Gate"

    def report(self, params):
        """JAX-traceable 1-d vector of the estimates :meth:`describe` lists, in the same order.

        The observed-information standard errors and the bootstrap apply the
        delta method / collect replicates through this map, so it must be
        differentiable in ``params``.  Default: the :meth:`free_mask` entries of
        :meth:`canonical` parameters, leaf by leaf in row-major order; override
        it when ``describe`` reports something else (e.g. a standard deviation).
        """
        from .._pytree import free_entries
        return free_entries(self.canonical(params), self.free_mask)

    def boundary(self, params, ctl) -> list[str]:
        """Messages for the standard errors when the fitted gate sits where they are not valid (default: none).

        :func:`moestat.inference.bootstrap.observed_information` adds them to its
        warnings, e.g. top-K with K = 1 (weights 0 or 1: the coefficients'
        scale is not identified) or an activation gate whose temperature sits
        at its lower bound.
        """
        return []

    # ---- router diagnostics (moestat.routing) ------------------------------------------
    def router(self):
        """(router gate, index of its first expert in the model): the gate that routes (default: this one, 0).

        A shared + routed gate returns its routed gate and the number of
        shared experts; :meth:`router_params` gives that gate's parameters.
        """
        return self, 0

    def router_params(self, params):
        """The parameters of :meth:`router`'s gate (default: ``params``)."""
        return params

    @property
    def top_k(self) -> int:
        """Experts with non-zero weight at each point for sparse routers (top-K: K); dense gates: 1.

        The default K of the routing sets in :func:`moestat.routing.routing_report`.
        """
        return 1

    def sample_x(self, params, n: int, rng: np.random.Generator):
        """Draw n covariates and their experts from a joint gate's covariate model: (x (n, d), z (n,)).

        Only joint gates (:attr:`joint`) model the covariates; the default
        raises TypeError (conditional gates take covariates from the user or
        a covariate law, :func:`moestat.sampling.draw_x`).
        """
        raise TypeError("the %r gate is conditional on the covariates and has no law to draw them from"
                        % self.name)

    def near_truth(self, true, base, s, s_blocks, rng: np.random.Generator, sd: float, sd_v: float):
        """Gate parameters near the truth: the Monte Carlo harness's ``paper`` starting values.

        Parameters
        ----------
        true : canonical true gate parameters (k* experts)
        base : the fitted gate's :meth:`init_params` (k experts): the layout of the result
        s : int ndarray (k,)
            The true expert assigned to each fitted expert.
        s_blocks : list of int ndarrays
            The same assignment within each block of experts (one block unless the experts are composite).
        rng : numpy.random.Generator
        sd, sd_v : float
            Standard deviations of the gate noise and of the variance noise.

        Returns
        -------
        gate parameters shaped like ``base``

        Default: rows ``s`` of every leaf with an expert axis plus one
        N(0, sd^2) draw per fitted expert on its free entries
        (:meth:`free_mask`); leaves without an expert axis (a temperature)
        stay at the truth.
        """
        def rows(t, f):
            t = np.asarray(t)
            if t.ndim == 0:
                return t
            return t[s] + rng.normal(0.0, sd, size=(s.size,) + (1,) * (t.ndim - 1)) * np.asarray(f)
        return jax.tree_util.tree_map(rows, true, self.free_mask(base))

    # ---- mixing-measure atoms (moestat.losses, the Monte Carlo harness) ---------------
    def atoms(self, params, intercept: bool):
        """The gate's part of the mixing measure for the Voronoi losses (:class:`moestat.losses.Atoms`).

        Parameters
        ----------
        params : gate parameters, canonical (:meth:`canonical`)
        intercept : bool
            Whether column 0 of the gate design is the intercept.

        Returns
        -------
        mass : ndarray (k,)
            Atom masses (e.g. exp(beta_0i - max beta_0) for a softmax gate).
        blocks : dict name -> ndarray (k, d)
            Gate parameter blocks, named as in :mod:`moestat.losses` (e.g. ``gate_slope``).
        kind : str
            How the masses arise (:data:`moestat.losses.GATE_KINDS`; "softmax": up to a common factor).

        The default raises TypeError: a gate is scored by the Voronoi losses only once it says
        what its atoms are.
        """
        raise TypeError("the %r gate defines no mixing-measure atoms (Gate.atoms), so the Voronoi losses "
                        "cannot score it; use a density loss ('tv', 'hellinger') or give the gate an atoms() "
                        "method" % self.name)

    def atom_groups(self, params, intercept: bool) -> list:
        """[(group name, mass (k_g,), blocks, kind), ...]: the atom groups of the gate, in expert order.

        Default: one group "moe" from :meth:`atoms`.  A gate whose experts form
        separately scored blocks (shared + routed) returns one entry per block;
        the experts' :meth:`moestat.experts.base.Expert.atom_groups` must
        return as many blocks, of the same sizes.
        """
        mass, blocks, kind = self.atoms(params, intercept)
        return [("moe", mass, blocks, kind)]

    def permute(self, params, perm):
        """Parameters with the experts relabelled: new expert i is old expert ``perm[i]``.

        Default: reorder axis 0 of every leaf whose first dimension is k (the
        result is not canonicalised; callers apply :meth:`canonical`).
        """
        from .._pytree import permute_leading
        return permute_leading(params, perm)

    def equivalent_relabellings(self, params) -> list:
        """Relabellings that give the same gate function but that the Voronoi losses do not see as one.

        The losses compare atoms in one identified parametrisation (e.g. the
        reference expert's row fixed at 0).  When another labelling of the
        experts gives the same gate *and* can be written in that
        parametrisation with different gate values, the mixing measure has a
        second representation, and a loss measured against only one of them
        is not a distance between models.  Returns the permutations ``perm``
        (new expert i = old expert ``perm[i]``, applied with :meth:`permute`)
        for which this happens; the Monte Carlo harness takes each Voronoi
        loss at its minimum over the truth's representations.

        Default: none (softmax translations are handled inside the losses;
        plain relabellings by the Voronoi cells).
        """
        return []


def softmax_log_weights(coef, Xg):
    """log softmax(coef @ Xg) over experts: (k, N)."""
    return klog_softmax(coef @ Xg)
