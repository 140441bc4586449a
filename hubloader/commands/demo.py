"""``hubloader demo``."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="publish a tiny model to a local hub, load it by name, run it")
    p.add_argument("--hub", type=Path, help="folder to publish into (default: a temp folder)")
    p.set_defaults(func=_demo)


def _demo(args) -> int:
    from ..tools.demo import run_demo

    run_demo(hub=args.hub)
    return 0
