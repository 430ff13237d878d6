"""The ``userstream`` command line.

Each area registers its own sub-commands (``local``, ``ingest``, ``cassandra``, ``stream``,
``run``); this module only builds the parser and turns known errors into one-line messages.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from userstream.cli.console import configure_logging, log_file_of
from userstream.errors import UserstreamError
from userstream.settings import SettingsError, load_settings

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
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="debug logging, and the libraries' and Spark's output here instead of "
        "<state dir>/logs/userstream.log",
    )
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
    try:
        log_file = log_file_of(load_settings().state_dir)
    except SettingsError:  # the command reports it; until then everything goes to the terminal
        log_file = None
    args.log_file = configure_logging(verbose=args.verbose, log_file=log_file)
    try:
        result: int | None = args.func(args)
    except (UserstreamError, SettingsError) as exc:
        print(f"userstream: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return int(result or 0)
