"""The `edge` command. Each command group lives beside the code it drives and registers itself here.

A module in COMMAND_MODULES exposes `register(subparsers)`; it adds its parsers and sets
`func=callable(args) -> int` on each. Modules are imported when the CLI starts, so they must keep
heavy imports (pymodbus, cv2) inside their command functions.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

COMMAND_MODULES = [
    "edge.commands",  # run, check, demo, buffer
    "edge.sync.cli",  # sync status
    "rules.cli",  # rules import|export|check|test
    "drivers.modbus.cli",  # modbus probe
    "edge.web.cli",  # users / tokens / tls
]


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    pass


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge",
        description=(
            "Community Edge: the runtime of a residential community's gateway box.\n"
            "It drives the devices on site, evaluates local rules, buffers everything in SQLite\n"
            "and hands the data to central platforms."
        ),
        epilog="Start with `edge demo` for a simulated site, or `edge check -c site.yaml` for your own.",
        formatter_class=HelpFormatter,
    )
    from edge import __version__

    parser.add_argument("--version", action="version", version=f"community-edge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name or (exc.name and name.startswith(exc.name + ".")):
                continue  # that command group is not part of this build
            raise
        module.register(sub)
    return parser


def add_config_arg(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument(
        "-c",
        "--config",
        required=required,
        metavar="SITE.yaml",
        help="the site file (`edge demo` writes one into its data dir: DIR/site.yaml)",
    )


def add_log_level_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="least severe log level printed",
    )


#: every file and directory a command creates is its user's alone: the journal, the state database
#: (password and session hashes), the snapshots, the demo's token. A file the user asks for
#: elsewhere (a TLS pair, an export) is private too until they widen it.
PRIVATE_UMASK = 0o077


def main(argv: Sequence[str] | None = None) -> int:
    from edge.state import StateDBError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    # before any command creates data; restored for a program that calls main() in-process
    previous = os.umask(PRIVATE_UMASK)
    try:
        return int(args.func(args) or 0)
    except StateDBError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    finally:
        os.umask(previous)


if __name__ == "__main__":
    sys.exit(main())
