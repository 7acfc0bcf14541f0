"""Shared fixtures.  BLAS is single-threaded before NumPy loads (engineering.md §7.4)."""
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
# programs traced while a test replaces internal functions must not be stored for later processes
os.environ.setdefault("MOESTAT_PROGRAM_STORE", "0")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import moestat as ms  # noqa: E402


@pytest.fixture(scope="session")
def sim_df():
    return ms.datasets.load_sim_moe2()


@pytest.fixture(scope="session")
def sim_reference():
    return ms.datasets.sim_moe2_reference()


@pytest.fixture(scope="session")
def sim_fit(sim_df):
    return ms.GaussianMoE(n_experts=2).fit("y ~ x", data=sim_df)


def simulate_softmax_gaussian(n, gate, coef, sigma, seed):
    """Data from a softmax-gated Gaussian MoE with covariates x ~ N(0, I); gate/coef include the intercept."""
    rng = np.random.default_rng(seed)
    d = np.asarray(coef).shape[1] - 1
    x = rng.normal(size=(n, d))
    xd = np.column_stack([np.ones(n), x])
    eta = xd @ np.asarray(gate).T
    p = np.exp(eta - eta.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    z = (p.cumsum(1) > rng.random((n, 1))).argmax(1)
    y = (xd * np.asarray(coef)[z]).sum(1) + np.asarray(sigma)[z] * rng.normal(size=n)
    return x, y, z


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop JAX's in-memory compiled programs after each test module.

    The whole suite compiles several hundred XLA:CPU programs, and every live
    program holds memory mappings of its JIT-compiled code.  Kept alive in one
    process they reached Linux's ``vm.max_map_count`` (65 530) at about 94 % of
    the suite, and the next compilation segfaulted (measured: 65 000 maps
    without this fixture, at most about 20 000 with it).  The on-disk compile
    cache still serves the next module.
    """
    yield
    import gc

    import jax
    jax.clear_caches()
    gc.collect()
