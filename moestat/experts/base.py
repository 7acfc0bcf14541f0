"""The expert interface shared by every expert family.

Like gates, an expert family is a frozen (hashable) dataclass holding settings;
its parameters are a PyTree handed to pure methods.  Shapes: ``X (p, N)``
features-major expert design, ``y (N,)``, ``tau (k, N)``, ``w (N,)``.  Every
method and attribute that the EM loop, the sampler, the inference and the
Monte Carlo harness use is declared here, abstract or with a default
(``docs/extending.md`` lists them).
"""
from __future__ import annotations

import abc

from dataclasses import dataclass
from typing import Any, ClassVar

from functools import partial

import jax
import numpy as np

from .._registry import Registry
from ..data.design import padded_eval

_REGISTRY = Registry("expert", "moestat.experts expert object", "unknown expert family", "an expert object")


def register(cls):
    """Class decorator: make an expert family available by name."""
    return _REGISTRY.register(cls)


def available() -> list[str]:
    return _REGISTRY.available()


def get_expert(expert: Any) -> "Expert":
    """An expert object from a name (``"linear"``) or an expert instance."""
    return _REGISTRY.get(expert, Expert)


@partial(jax.jit, static_argnames=("expert",))
def _mean(params, X, expert):
    return expert.mean(params, X)


@dataclass(frozen=True)
class Expert(abc.ABC):
    """Base class of the expert families."""

    name: ClassVar[str] = "expert"
    #: "continuous" (Gaussian experts), "categorical" (multinomial-logistic experts) or "count" (GLM experts)
    response: ClassVar[str] = "continuous"
    #: "Xy" when :meth:`m_step_from_moments` computes the M-step from the weighted moments of the stacked
    #: design [X; y] (Gaussian experts with a linear mean); None when the M-step needs the data themselves.
    moment_design: ClassVar[str | None] = None
    #: Parameter fields that hold variances (the Monte Carlo ``paper`` protocol perturbs them by |noise|).
    variance_fields: ClassVar[tuple[str, ...]] = ()
    #: True when the expert is N(coef @ x, sigma2) with GaussianParams(coef, sigma2) exactly (the linear
    #: Gaussian expert, not a subclass with another mean): with a gate that has ``softmax_scores`` the Newton
    #: polish takes its derivatives in closed form (:mod:`moestat.fitting.parametrization`).
    linear_gaussian: ClassVar[bool] = False

    # ---- host-side set-up ------------------------------------------------------------
    @abc.abstractmethod
    def check_y(self, y: np.ndarray, name: str = "y") -> np.ndarray:
        """Validate the response; return it in the dtype the kernels use."""

    def prepare(self, y: np.ndarray, w: np.ndarray) -> dict:
        """Data-dependent settings computed once on the host (e.g. a variance floor)."""
        return {}

    # Response encoding (added for categorical experts): ``check_y`` validates, ``prepare``
    # records data-dependent facts such as the class labels in ``info``, and ``encode_y``
    # turns validated y into what the kernels use -- at fit *and* at predict time, so that
    # new labels are coded like the training labels.  Continuous families keep y as is.
    def encode_y(self, y: np.ndarray, info: dict, name: str = "y") -> np.ndarray:
        """The kernel-side response (e.g. class codes 0..C-1 in the training class order)."""
        return y

    def decode_y(self, codes: np.ndarray, info: dict) -> np.ndarray:
        """Inverse of :meth:`encode_y` (e.g. class codes back to labels)."""
        return codes

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Map the expert design (n, p) to the features the expert is linear in (default: as is)."""
        return X

    def transform_design(self, X: np.ndarray, intercept: bool) -> np.ndarray:
        """The expert features from the design (n, p); ``intercept``: column 0 is the intercept.

        Families whose features depend on which column is the
        intercept (polynomial terms, a neuron without bias) override this; the
        default is :meth:`transform`.
        """
        return self.transform(X)

    @abc.abstractmethod
    def init_features(self, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        """(n, q) features that k-means-type initialisations cluster on."""

    # ---- parameters ------------------------------------------------------------------
    @abc.abstractmethod
    def init_params(self, k: int, p: int, info: dict):
        ...

    def unconstrain(self, params):
        """Map parameters to an unconstrained space (e.g. variances to log-variances)."""
        return params

    def constrain(self, u):
        """Inverse of :meth:`unconstrain`."""
        return u

    @abc.abstractmethod
    def n_free_params(self, k: int, p: int) -> int:
        ...

    def canonical(self, params):
        """The identified representative of ``params`` (e.g. a ReLU neuron with |scale| = 1)."""
        return params

    # ---- kernels ---------------------------------------------------------------------
    @abc.abstractmethod
    def log_density(self, params, X, y):
        """(k, N) log f_i(y_n | x_n)."""

    @abc.abstractmethod
    def m_step(self, params, tau, X, y, w, ctl, max_halvings: int, fixed):
        """Parameters that do not lower sum_n w_n sum_i tau_in log f_i(y_n | x_n)."""

    def m_step_from_moments(self, params, M, total, ctl, fixed):
        """:meth:`m_step` from the moments of the rows tau_i w (used when :attr:`moment_design` is "Xy").

        Parameters
        ----------
        params : expert parameters
        M : array (k, f)
            The rows ``tau * w`` contracted with :func:`moestat.fitting.moments.features` of [X; y].
        total : scalar, the total case weight sum_n w_n
        ctl : EMControl
        fixed : bool PyTree like ``params``

        Returns
        -------
        params : the expert parameters after the M-step
        """
        raise TypeError("the %r expert family has no moment M-step (moment_design is None)" % self.name)

    @abc.abstractmethod
    def mean(self, params, X):
        """(k, N) conditional mean of each expert (class probabilities: (k, C, N))."""

    @abc.abstractmethod
    def sample(self, key, params, X, z):
        """Draw y (N,) given expert labels z (N,) with a JAX key; X (p, N) features-major.

        The stream is JAX's (it changed in JAX 0.5); :meth:`sample_numpy` is the
        version-stable one.
        """

    def noise_variances(self, params):
        """(k,) variances sigma_i^2 when y | x, z=i ~ N(mean_i(x), sigma_i^2), else None (the default).

        Used by the default :meth:`sample_numpy` and by the density losses'
        integration range.
        """
        return None

    def host_mean(self, params, X: np.ndarray) -> np.ndarray:
        """:meth:`mean` at a host design X (n, p): (k, n) (class probabilities: (k, C, n)).

        Evaluated with X padded to its size bucket, so every n of a bucket
        reuses one compiled program.
        """
        return padded_eval(_mean, params, X, self)

    def sample_numpy(self, rng: np.random.Generator, params, X: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Draw y (n,) given expert labels z (n,) from NumPy's generator ``rng``; X (n, p) sample-major.

        The Monte Carlo harness draws every replicate through this method, so
        its data are the same in every JAX version.  Default: Gaussian families
        (:meth:`noise_variances` not None) draw mean + sd * one standard normal
        per point; other families fall back to :meth:`sample` with a JAX key
        drawn from ``rng`` (then the stream is only as stable as JAX's).

        Parameters
        ----------
        rng : numpy.random.Generator
        params : expert parameters
        X : ndarray (n, p), the expert design
        z : int ndarray (n,), the generating experts

        Returns
        -------
        y : ndarray (n,)
        """
        n = X.shape[0]
        s2 = self.noise_variances(params)
        if s2 is not None:
            mean = self.host_mean(params, X)                                   # (k, n)
            e = rng.standard_normal(n)
            return mean[z, np.arange(n)] + np.sqrt(np.asarray(s2, dtype=np.float64)[z]) * e
        key = jax.random.PRNGKey(int(rng.integers(0, 2**31 - 1)))
        return np.asarray(self.sample(key, params, jax.numpy.asarray(X.T), jax.numpy.asarray(z)))

    @abc.abstractmethod
    def describe(self, params, names: list[str]) -> list[tuple[int, str, float]]:
        """[(expert, term, estimate), ...] for the expert parameters (expert 0-based)."""

    @abc.abstractmethod
    def free_mask(self, params):
        """PyTree of booleans like params: True for free (identified) entries."""

    def at_bound(self, params, ctl):
        """PyTree of booleans like params: entries sitting on a bound (e.g. the variance floor).

        The Newton polish holds them fixed; inference reports them as on the boundary.
        """
        return self.free_mask(params)._replace(**{f: np.zeros(np.shape(getattr(params, f)), bool)
                                                  for f in params._fields})

    def feasible(self, params, ctl) -> bool:
        """Whether ``params`` respects the family's bounds (checked on Newton-polish candidates)."""
        return True

    # ---- inference (moestat.inference) ---------------------------------------------
    def report(self, params):
        """JAX-traceable 1-d vector of the estimates :meth:`describe` lists, in the same order.

        Used for the delta-method standard errors and the bootstrap; must be
        differentiable in ``params``.  Default: the :meth:`free_mask` entries
        of ``params``, leaf by leaf in row-major order; override it when
        ``describe`` reports transformed values (e.g. sigma instead of sigma^2).
        """
        from .._pytree import free_entries
        return free_entries(params, self.free_mask)

    def permute(self, params, perm):
        """Parameters with the experts relabelled: new expert i is old expert ``perm[i]``.

        Default: reorder axis 0 of every leaf whose first dimension is k.
        """
        from .._pytree import permute_leading
        return permute_leading(params, perm)

    # ---- mixing-measure atoms (moestat.losses, the Monte Carlo harness) ---------------
    def atoms(self, params, intercept: bool) -> dict:
        """The experts' parameter blocks of the mixing measure for the Voronoi losses.

        Parameters
        ----------
        params : expert parameters, canonical (:meth:`canonical`)
        intercept : bool
            Whether column 0 of the expert design is the intercept.

        Returns
        -------
        blocks : dict name -> ndarray (k, d)
            Named as in :mod:`moestat.losses` (``slope``, ``intercept``, ``variance``, ``expert``).

        The default raises TypeError: a family is scored by the Voronoi losses only once it
        says what its atoms are.
        """
        raise TypeError("the %r expert family defines no mixing-measure atoms (Expert.atoms), so the Voronoi "
                        "losses cannot score it; use a density loss ('tv', 'hellinger') or give the family an "
                        "atoms() method" % self.name)

    def atom_groups(self, params, intercept: bool) -> list:
        """[blocks, ...]: the experts' atom blocks per group of experts, in expert order.

        Default: one group, :meth:`atoms`.  Composite families (:class:`moestat.experts.Stacked`)
        return one per block of experts, matched with the gate's
        :meth:`moestat.gating.base.Gate.atom_groups`.
        """
        return [self.atoms(params, intercept)]

    def parts(self, params) -> list:
        """[(family, parameters), ...] per block of experts, in expert order (default: one block, this family)."""
        return [(self, params)]

    def from_parts(self, parts: list):
        """Inverse of :meth:`parts`: the parameters from the blocks' parameters (a list)."""
        return parts[0]

    def degenerate(self, params, n_eff, info: dict) -> np.ndarray:
        """(k,) booleans: experts that sit at a spurious degenerate solution."""
        return np.zeros(np.asarray(n_eff).shape[0], dtype=bool)
