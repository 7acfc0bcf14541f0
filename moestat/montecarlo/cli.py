"""``moestat reproduce``: run a published convergence-rate experiment from its spec.

    moestat reproduce <experiment> [--quick] [--out DIR] [--workers N] [--scheduler ADDRESS] [--resume]
    moestat reproduce --list

The main CLI (:mod:`moestat.cli`) mounts this with :func:`add_parser`.
"""
from __future__ import annotations

import argparse
import sys


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``reproduce`` subcommand to an argparse subparsers object."""
    p = subparsers.add_parser(
        "reproduce", help="run a convergence-rate experiment (simulate, fit, losses, slopes, figure)",
        description="Reproduce a published convergence-rate experiment: simulate from the true MoE, fit, "
                    "measure the Voronoi/density losses over replicates and sample sizes, fit the slopes. "
                    "Results are stored in DIR/results.sqlite as each replicate finishes; --resume completes "
                    "an interrupted run. Exit status: 0 done, 1 the store or an output file cannot be used "
                    "(not a results database, unwritable, disk full), 2 a bad spec or option, 130 interrupted.")
    p.add_argument("experiment", nargs="?", help="a shipped experiment name (see --list) or a path to a JSON spec")
    p.add_argument("--list", action="store_true", help="list the shipped experiments and exit")
    p.add_argument("--quick", action="store_true", help="the small grid (about a minute on 2 cores)")
    p.add_argument("--out", metavar="DIR", help="output folder (default runs/<experiment>-<protocol>[-quick])")
    p.add_argument("--workers", type=int, metavar="N", help="local worker processes (default: one per core)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="run on a Dask distributed scheduler (tcp://host:8786)")
    p.add_argument("--resume", action="store_true", help="complete a previous run in DIR")
    p.add_argument("--overwrite", action="store_true", help="discard previous results of this experiment in DIR")
    p.add_argument("--protocol", choices=("paper", "mle"),
                   help="initialisation: 'paper' (near-truth starts with the published noise laws) or "
                        "'mle' (random restarts, best likelihood); default: the spec's")
    p.add_argument("--replicates", type=int, metavar="R", help="override the replicates per sample size")
    p.add_argument("--batch", choices=("auto", "replicate", "vmap"), default="auto",
                   help="replicate batching: 'auto' (vectorised on GPU, one by one on CPU)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-figure", action="store_true", help="skip the figure")
    p.set_defaults(func=run)
    return p


def list_specs(out=None) -> None:
    from .spec import available_specs, load_spec
    out = sys.stdout if out is None else out  # the stream of the call, not the one at import time
    rows = []
    for name in available_specs():
        s = load_spec(name)
        losses = ", ".join("%s (pred %s%s)" % (l["name"], l.get("predicted"),
                                                "" if l.get("published") is None else ", pub %.3f" % l["published"])
                           for v in s.variants() for l in v.losses)
        rows.append("%-20s %-6s %s\n%-27s losses: %s" % (name, s.protocol, s.title, "", losses))
    print("\n".join(rows), file=out)


def run(args) -> int:
    if args.list:
        list_specs()
        return 0
    if not args.experiment:
        print("moestat reproduce: name an experiment (see --list)", file=sys.stderr)
        return 2
    from .runner import RunExistsError, format_slopes, run_experiment
    from .store import StoreError
    _terminate_as_interrupt()
    try:
        res = run_experiment(args.experiment, quick=args.quick, out_dir=args.out, workers=args.workers,
                             scheduler=args.scheduler, resume=args.resume, overwrite=args.overwrite,
                             protocol=args.protocol, replicates=args.replicates, batch=args.batch,
                             progress=not args.no_progress, figures=not args.no_figure)
    except (RunExistsError, ValueError) as exc:
        print("moestat reproduce: %s" % exc, file=sys.stderr)
        return 2
    except StoreError as exc:
        print("moestat reproduce: %s" % exc, file=sys.stderr)
        return 1
    except OSError as exc:  # an output file (CSV, figure) that cannot be written: a full disk, a read-only folder
        where = exc.filename if exc.filename is not None else (args.out or "the output folder")
        print("moestat reproduce: cannot write %s: %s; the stored results are intact -- rerun with --resume"
              % (where, exc.strerror or exc), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nmoestat reproduce: interrupted; finished replicates are stored -- rerun with --resume",
              file=sys.stderr)
        return 130
    print(format_slopes(res.slopes))
    print("wrote %s" % ", ".join(res.files))
    return 0


def _terminate_as_interrupt():
    """SIGTERM behaves like Ctrl-C, so that the worker processes are stopped too."""
    import signal
    import threading
    if threading.current_thread() is threading.main_thread():
        def handler(signum, frame):
            raise KeyboardInterrupt
        signal.signal(signal.SIGTERM, handler)


def main(argv=None) -> int:
    """Stand-alone entry point (``python -m moestat.montecarlo.cli``)."""
    parser = argparse.ArgumentParser(prog="moestat")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
