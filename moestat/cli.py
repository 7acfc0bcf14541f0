"""The ``moestat`` command line (subcommands are mounted from their modules)."""
from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="moestat", description="Statistical mixture-of-experts models")
    sub = parser.add_subparsers(dest="command", required=True)
    from .montecarlo.cli import add_parser as add_reproduce  # harness: `moestat reproduce`
    add_reproduce(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
