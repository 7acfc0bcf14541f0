"""The regime-2 figure script's stratification by the near-truth start's configuration
(paper_figures/multinomial_local_slopes.py)."""
import os
import sys

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "paper_figures"))
mls = pytest.importorskip("multinomial_local_slopes")

from moestat.montecarlo.protocols import assignment  # noqa: E402


def test_configuration_shares_are_those_of_the_protocols_assignment():
    np.testing.assert_allclose(mls.configuration_shares(3, 2), [2 / 3, 1 / 3])
    # k* = 3: of the 12 covering tails (a, b, c) six are permutations of (0, 1, 2), three each (1, 1, 2), (1, 2, 2)
    np.testing.assert_allclose(mls.configuration_shares(4, 3), [1 / 2, 1 / 4, 1 / 4])
    with pytest.raises(ValueError, match="k = k\\* \\+ 1"):
        mls.configuration_shares(4, 2)
    rng = np.random.default_rng(0)
    draws = [np.argmax(np.bincount(assignment(3, 2, rng), minlength=2)) for _ in range(6000)]
    assert abs(np.mean(np.asarray(draws) == 0) - 2 / 3) < 0.02
    # the script replays the replicate's start stream: the same configuration for every gate of a data set
    assert {mls.extra_atom(2024, 5000, r) for r in range(40)} == {0, 1}


def test_stratified_mean_removes_the_chance_mix_of_configurations():
    """Two configurations whose losses differ 20-fold but fall at the same rate: the stratified mean's slope
    is that rate whatever share of the replicates of each n drew each configuration; the plain mean's is not."""
    ns = [10000, 20000, 40000, 80000, 160000]
    rows = []
    for n in ns:
        for rep in range(12):
            c = mls.extra_atom(7, n, rep)
            rows.append({"n": n, "rep": rep, "extra_atom": c, "loss_D1": (0.05 if c == 0 else 1.0) * n ** -0.5})
    df = pd.DataFrame(rows)
    shares = df.groupby("n")["extra_atom"].mean()
    assert shares.max() - shares.min() > 0.1             # the mix varies between sizes in this draw
    frames = {"a": df, "b": df.assign(loss_D1=df["loss_D1"] * (df["n"] / 1e4) ** -0.5)}
    boot = mls.bootstrap_windows(frames, draws=20, wide_from=(10000,))
    wide = boot[(boot["n_lo"] == 10000) & (boot["n_hi"] == 160000)].set_index(["stat", "curve"])
    assert wide.loc[("stratified mean", "a"), "slope"] == pytest.approx(-0.5, abs=1e-9)
    assert wide.loc[("stratified mean", "b"), "slope"] == pytest.approx(-1.0, abs=1e-9)
    assert wide.loc[("stratified mean", "b"), "diff"] == pytest.approx(-0.5, abs=1e-9)
    for j in (0, 1):
        assert wide.loc[("mean, extra atom at expert %d" % j, "a"), "slope"] == pytest.approx(-0.5, abs=1e-9)
    assert abs(wide.loc[("mean", "a"), "slope"] + 0.5) > 0.01
    flat = mls.slope_changes(frames, draws=20).set_index(["stat", "curve"])
    assert flat.loc[("stratified mean", "a"), "last_change"] == pytest.approx(0.0, abs=1e-9)


def test_cell_size_slopes_split_exact_and_over_specified_cells():
    css = pytest.importorskip("cell_size_slopes")
    rows = []
    rng = np.random.default_rng(0)
    for n in (1000, 4000, 16000, 64000):
        for rep in range(8):
            big = int(rng.integers(0, 2))          # which true atom's cell holds two fitted atoms
            row = {"n": n, "rep": rep}
            for j in (0, 1):
                size = 2 if j == big else 1
                row["err_moe.size[%d]" % j] = size
                row["err_moe.slope[%d]" % j] = (3.0 * n ** -0.25) if size == 2 else (0.5 * n ** -0.5)
            rows.append(row)
    out = css.cell_size_slopes(pd.DataFrame(rows), n_from=4000).set_index("cell_size")
    assert out.loc[1, "slope"] == pytest.approx(-0.5, abs=1e-9)
    assert out.loc[2, "slope"] == pytest.approx(-0.25, abs=1e-9)
    assert out.loc[2, "slope_from"] == pytest.approx(-0.25, abs=1e-9) and out.loc[2, "sizes"] == 4
