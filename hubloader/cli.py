"""``hubloader`` command line. Each command group lives in ``hubloader.commands.<group>`` and
adds its subcommands through ``register(subparsers)``. Errors print one line and exit 1."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from .errors import HubLoaderError

__all__ = ["main", "build_parser"]

# one module per command group; each defines register(subparsers)
COMMAND_MODULES = (
    "hubloader.commands.models",   # ls, info, validate
    "hubloader.commands.demo",     # demo
    "hubloader.commands.publish",  # push, pack, convert
    "hubloader.commands.hub",      # download, cache ls|verify|prune|rm
    "hubloader.commands.run",      # run TASK MODEL INPUT
    "hubloader.commands.mm",       # flops
    "hubloader.commands.federate", # federate MODEL --data DIR ... (Flower)
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hubloader",
                                     description="Load pretrained PyTorch models by name.")
    from ._version import __version__

    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log more (-v info, -vv debug)")
    parser.add_argument("--version", action="version", version=f"hubloader {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    from .redaction import RedactingFilter, redact

    for handler in logging.getLogger().handlers:  # no presigned URL or token reaches stderr
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
    try:
        return int(args.func(args) or 0)
    except HubLoaderError as err:
        print(f"error: {redact(str(err))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
