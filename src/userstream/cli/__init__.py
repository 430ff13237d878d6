"""The ``userstream`` command line.

Each area registers its own sub-commands (``local``, ``ingest``, ``cassandra``, ``stream``,
``run``); this module only builds the parser and turns known errors into one-line messages.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence

from userstream.errors import UserstreamError
from userstream.settings import SettingsError

# module path -> it defines register(subparsers) adding its commands with set_defaults(func=...)
_COMMAND_MODULES = (
    "userstream.cli.local",
    "userstream.cli.cluster",
    "userstream.cli.pipeline",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="userstream",
        description="Real-time user-data pipeline: ingestion -> PostgreSQL -> Kafka -> Spark -> Cassandra.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        register: Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None] = module.register
        register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        result: int | None = args.func(args)
    except (UserstreamError, SettingsError) as exc:
        print(f"userstream: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return int(result or 0)
