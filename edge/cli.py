"""The `edge` command. Each command group lives beside the code it drives and registers itself here.

The core's command modules (COMMAND_MODULES) and every plugin's `commands` hook (`edge.plugins`)
take the subparsers and declare each command with `add_command` (and a group of them with
`add_command_group`), which gives every command the same help layout, the same `-c SITE.yaml` and
its `func=callable(args) -> int`. They run when the CLI starts, so they keep heavy imports
(pymodbus, cv2) inside their command functions. A core command is declared by its own module
alone: `edge run` is the service, and every other command's module would stay in its memory for
as long as it runs.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sqlite3
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    from edge.config import Site

#: each core command module and the top-level commands its `register` declares, in `edge --help`
#: order: `edge NAME` imports only the module that declares NAME (tests/core/test_cli.py holds
#: every module to its names)
COMMAND_MODULES: dict[str, tuple[str, ...]] = {
    "edge.commands": ("run", "check", "buffer"),
    "edge.api.cli": ("users", "tokens", "tls"),
    "edge.audit_cli": ("audit",),
    "edge.privacy_cli": ("privacy",),
    "edge.status_cli": ("status",),
    "edge.doctor": ("doctor",),
    "edge.backup_cli": ("backup", "restore"),
}


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Descriptions keep their line breaks; an option's help ends with its default when it has one:
    not for an option without a default (None), a flag (on or off, nothing to default), or a help
    text that states its default itself."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default is None or action.nargs == 0 or "(default" in text:
            return action.help
        return super()._get_help_string(action)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The `edge` parser with every command, or, for a `command` a core module declares, with that
    module's commands alone (parsing `edge COMMAND ...` needs no other: the top-level help and
    the list of choices in an unknown command's error are never printed then). The plugins are
    loaded either way, so that a conflict between them stops every command alike."""
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
    own = [module for module, names in COMMAND_MODULES.items() if command in names]
    for name in own or COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    from edge.plugins import registry

    plugins = registry().plugins
    if own:
        return parser
    for plugin in plugins:
        if plugin.commands is None:
            continue
        before = set(sub.choices)
        plugin.commands(sub)
        hint = plugin.install_hint()
        if hint:  # listed in --help, but running one says what to install instead of a traceback
            for name in set(sub.choices) - before:
                _refuse_with(sub.choices[name], f"edge {name}: {hint}")
    return parser


def _refuse_with(parser: argparse.ArgumentParser, message: str) -> None:
    def refuse(args: argparse.Namespace) -> int:
        print(message, file=sys.stderr)
        return 1

    parser.set_defaults(func=refuse)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _refuse_with(child, message)


Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
Command: TypeAlias = Callable[[argparse.Namespace], int]


@dataclass(frozen=True)
class Arg:
    """One argument of a command: what `ArgumentParser.add_argument` takes."""

    flags: tuple[str, ...]
    options: dict[str, Any]

    def add_to(self, parser: argparse._ActionsContainer) -> None:
        parser.add_argument(*self.flags, **self.options)


@dataclass(frozen=True)
class OneOf:
    """Arguments that exclude each other; `required`: exactly one of them must be given."""

    args: tuple[Arg, ...]
    required: bool

    def add_to(self, parser: argparse._ActionsContainer) -> None:
        group = parser.add_mutually_exclusive_group(required=self.required)
        for a in self.args:
            a.add_to(group)


def arg(*flags: str, **options: Any) -> Arg:
    return Arg(flags, options)


def one_of(*args: Arg, required: bool = False) -> OneOf:
    return OneOf(args, required)


def config_arg(required: bool = True) -> Arg:
    """`-c SITE.yaml`, worded the same in every command that reads a site file."""
    return arg(
        "-c",
        "--config",
        required=required,
        metavar="SITE.yaml",
        help="the site file (`edge demo` writes one into its data dir: DIR/site.yaml)",
    )


def add_command(
    sub: Subcommands,
    name: str,
    *,
    help: str,
    description: str,
    func: Command,
    config: bool = False,
    args: Sequence[Arg | OneOf] = (),
    epilog: str | None = None,
    formatter_class: type[argparse.HelpFormatter] = HelpFormatter,
) -> argparse.ArgumentParser:
    """Declare `edge ... NAME`, run by `func`. `config`: it needs `-c SITE.yaml`, listed before
    `args` (a command where it is optional, or comes later, puts `config_arg(False)` in `args`).
    The arguments appear in `--help` in the order given."""
    p = sub.add_parser(
        name, help=help, description=description, epilog=epilog, formatter_class=formatter_class
    )
    for a in (config_arg(), *args) if config else args:
        a.add_to(p)
    p.set_defaults(func=func)
    return p


def add_command_group(
    sub: Subcommands,
    name: str,
    *,
    help: str,
    description: str,
    dest: str,
    metavar: str | None = "ACTION",
    required: bool = True,
    formatter_class: type[argparse.HelpFormatter] = HelpFormatter,
) -> Subcommands:
    """Declare `edge NAME ACTION ...`; its actions are added with `add_command` on the result.
    Without `required`, `edge NAME` alone prints the group's help and exits 2; with it, argparse
    refuses it naming `metavar` (or `dest` when metavar is None: a name people do not read)."""
    p = sub.add_parser(name, help=help, description=description, formatter_class=formatter_class)
    actions = p.add_subparsers(dest=dest, metavar=metavar, required=required)
    if not required:

        def print_group_help(args: argparse.Namespace) -> int:
            p.print_help()
            return 2

        p.set_defaults(func=print_group_help)
    return actions


def int_range(low: int, high: int) -> Callable[[str], int]:
    """An argparse `type`: an integer from `low` to `high`; anything else is a usage error
    (exit status 2) naming the range, before the command does anything."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is out of range: give {low} to {high}")
        return value

    parse.__name__ = "integer"  # argparse names the type in its other errors
    return parse


def non_empty(text: str) -> str:
    """An argparse `type`: a text with something besides spaces, stripped of surrounding spaces."""
    stripped = text.strip()
    if not stripped:
        raise argparse.ArgumentTypeError("must not be empty")
    return stripped


def log_level_arg() -> Arg:
    return arg(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="least severe log level printed",
    )


#: every file and directory a command creates is its user's alone: the journal, the state database
#: (password and session hashes), the snapshots, the demo's token. A file the user asks for
#: elsewhere (a TLS pair, an export) is private too until they widen it.
PRIVATE_UMASK = 0o077


class PartlyDone(RuntimeError):
    """An error after the command committed its change (a key deleted, keys rewrapped): the
    message says what is done and what is not. Any other error of a command leaves nothing
    changed, and `main` says so."""


def main(argv: Sequence[str] | None = None) -> int:
    from edge.plugins import PluginConflict
    from edge.state import StateDBError

    argv = sys.argv[1:] if argv is None else list(argv)
    # the first word names the command unless it is an option (-h, --version) of `edge` itself
    command = argv[0] if argv and not argv[0].startswith("-") else None
    try:
        parser = build_parser(command)
    except PluginConflict as exc:
        print(f"edge: {exc}; uninstall one of the packages that provide them", file=sys.stderr)
        return 2
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
    except PartlyDone as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except OSError as exc:  # a path the command was given: missing, a directory, not permitted ...
        print(f"error: {os_error(exc)}", file=sys.stderr)
        return 1
    except sqlite3.OperationalError as exc:
        from edge.store.rows import is_disk_full

        if not is_disk_full(exc) and "disk I/O error" not in str(exc):
            raise
        # true here: a command whose change may be committed by then raises PartlyDone instead
        print(
            f"error: {exc}: nothing was changed; free space on the gateway's disk, then retry",
            file=sys.stderr,
        )
        return 1
    finally:
        os.umask(previous)


def os_error(exc: OSError) -> str:
    """`PATH: what is wrong` for an OSError about a file (a missing parent directory said as such),
    else its own text."""
    path = exc.filename
    if path is None or not exc.strerror:
        return str(exc)
    path = os.fsdecode(path) if isinstance(path, str | bytes | os.PathLike) else str(path)
    if exc.filename2 is not None:
        return f"{path} -> {os.fsdecode(exc.filename2)}: {exc.strerror}"
    if isinstance(exc, FileNotFoundError):
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            return f"{path}: no such directory: {parent}"
    return f"{path}: {exc.strerror}"


def load_or_report(path: str) -> Site | None:
    """The validated site file, or None after printing every problem and their count on stderr."""
    from edge.config import ConfigError, load_site

    try:
        return load_site(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        n = len(exc.problems)
        print(f"{path}: {n} problem{'s' if n != 1 else ''}", file=sys.stderr)
        return None


if __name__ == "__main__":
    sys.exit(main())
