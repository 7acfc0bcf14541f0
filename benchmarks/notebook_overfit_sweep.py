"""The full-size finite-sample sweep of notebooks/why_softmax_gating_is_slow.ipynb, on a process pool.

Runs the notebook's own code -- its code cells tagged ``sweep-lib`` (imports,
true models, ``one_replicate``), executed verbatim -- for the three gates
(softmax, modified softmax, normalized sigmoid), k = 2 (exact) and k = 3
(over-fitted), n = 500, 1000, ..., 32000 and R data sets per n, 6 restarts per
fit, and writes one row per fit to ``notebooks/data/overfit_sweep.csv``, which
part 5 of the notebook plots.

    OPENBLAS_NUM_THREADS=1 python benchmarks/notebook_overfit_sweep.py [--workers W] [--reps R] [--ns 500,1000] [--out PATH]

The stored CSV came from 16 worker processes on a 16-core machine (JAX 0.11.2 on
CPU): 336 fits, about 190 s wall, 2670 s of fitting.  Every data set is fixed by
(SEED, n, rep), so a rerun refits the same data; the fits agree to the EM
tolerance on the same software stack.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import time

HERE = os.path.dirname(os.path.abspath(__file__))
NOTEBOOK = os.path.join(HERE, "..", "notebooks", "why_softmax_gating_is_slow.ipynb")
NS = (500, 1000, 2000, 4000, 8000, 16000, 32000)


def notebook_code(path: str = NOTEBOOK, tag: str = "sweep-lib") -> str:
    """Source of the notebook's code cells carrying ``tag``, in order."""
    with open(path) as fh:
        nb = json.load(fh)
    cells = [c for c in nb["cells"] if c["cell_type"] == "code" and tag in c.get("metadata", {}).get("tags", [])]
    return "\n\n".join("".join(c["source"]) if isinstance(c["source"], list) else c["source"] for c in cells)


# The notebook's functions become this module's globals -- in spawned workers too, which re-import this file.
exec(compile(notebook_code(), NOTEBOOK, "exec"))


def _fit(task):
    return one_replicate(*task)  # noqa: F821 (defined by the notebook's code)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--reps", type=int, default=8)
    ap.add_argument("--n-init", type=int, default=6)
    ap.add_argument("--ns", default=",".join(map(str, NS)), help="comma-separated sample sizes")
    ap.add_argument("--out", default=os.path.join(HERE, "..", "notebooks", "data", "overfit_sweep.csv"))
    args = ap.parse_args()
    # largest n and k = 3 first: the slowest fits start early
    ns = sorted((int(v) for v in args.ns.split(",")), reverse=True)
    tasks = [(fam, k, n, r, args.n_init) for n in ns for k in (3, 2)
             for fam in FAMILIES for r in range(args.reps)]  # noqa: F821
    t0 = time.time()
    with mp.get_context("spawn").Pool(args.workers) as pool:
        rows = list(pool.imap_unordered(_fit, tasks))
    df = pd.DataFrame(rows).sort_values(["family", "k", "n", "rep"])  # noqa: F821
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    df.to_csv(args.out, index=False)
    print("%d fits in %.0f s wall (%.0f s fitting) -> %s" % (len(df), time.time() - t0, df.seconds.sum(), args.out))
    print(slopes(df).round(3).to_string())  # noqa: F821


if __name__ == "__main__":
    main()
