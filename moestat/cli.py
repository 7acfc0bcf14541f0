"""The ``moestat`` command line: ``moestat fit | reproduce``.

``moestat fit --demo`` fits the bundled ``sim_moe2`` data and prints a summary;
``moestat fit data.csv -f "y ~ x" -g "~ z" -k 2`` fits a CSV file.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings


def _fit(args) -> int:
    import pandas as pd

    import moestat as ms

    if args.demo:
        df = ms.datasets.load_sim_moe2()
        formula, gate = "y ~ x", None
        k = 2 if args.k is None else args.k
    else:
        if not args.data:
            print("moestat fit: give a CSV file (or --demo)", file=sys.stderr)
            return 2
        try:
            df = pd.read_csv(args.data)
        except (OSError, ValueError) as exc:
            print("moestat fit: cannot read %s: %s" % (args.data, exc), file=sys.stderr)
            return 2
        if not args.formula:
            print("moestat fit: give the model formula, e.g. -f 'y ~ x'", file=sys.stderr)
            return 2
        formula, gate, k = args.formula, args.gate, (2 if args.k is None else args.k)
    model_cls = getattr(ms, args.family)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model = model_cls(n_experts=k, gating=args.gating)
            res = model.fit(formula, gate_X=gate, data=df, n_init=args.n_init, seed=args.seed)
        except (ValueError, TypeError) as exc:
            print("moestat fit: %s" % exc, file=sys.stderr)
            return 2
    print(res.summary())
    for w in caught:
        print("warning: %s" % w.message, file=sys.stderr)
    if args.demo:
        ref = ms.datasets.sim_moe2_reference()["mle"]["loglik"]
        print("reference MLE log-likelihood (direct optimisation in R): %.6f; this fit: %.6f; difference %.2e"
              % (ref, res.loglik, res.loglik - ref))
    if args.json:
        out = {"loglik": res.loglik, "aic": res.aic, "bic": res.bic, "converged": res.converged,
               "n_iter": res.n_iter, "params": res.params_frame().to_dict(orient="records")}
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="moestat", description="Statistical mixture-of-experts models.")
    sub = p.add_subparsers(dest="command")
    f = sub.add_parser("fit", help="fit a mixture of experts to a CSV file (or the demo data)")
    f.add_argument("data", nargs="?", help="CSV file with a header row")
    f.add_argument("--demo", action="store_true", help="fit the bundled sim_moe2 data (2 experts)")
    f.add_argument("-f", "--formula", help="expert formula, e.g. 'y ~ x1 + x2'")
    f.add_argument("-g", "--gate", help="gate formula, e.g. '~ z' (default: the expert covariates)")
    f.add_argument("-k", type=int, default=None, help="number of experts (default 2)")
    f.add_argument("--gating", default="softmax", help="gating family (default softmax)")
    f.add_argument("--family", default="GaussianMoE", help="estimator class (default GaussianMoE)")
    f.add_argument("--n-init", type=int, default=10, help="number of starts (default 10)")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--json", help="also write the estimates to this JSON file")
    f.set_defaults(func=_fit)
    from .montecarlo.cli import add_parser as add_reproduce
    add_reproduce(sub)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    from ._parallel import keep_heap_memory
    keep_heap_memory()   # this process is moestat's own: reuse freed XLA buffers instead of re-faulting pages
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
