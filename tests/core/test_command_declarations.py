"""Commands declared with edge.cli.add_command / add_command_group: argument order and help layout,
the shared `-c SITE.yaml`, what a group does without its action, and the usage errors."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from edge.cli import add_command, add_command_group, arg, build_parser, config_arg, main, one_of
from tests.core.test_cli import COMMANDS


def _declared() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """A root `edge` parser with `edge things do`, declared the way the command modules do."""
    root = argparse.ArgumentParser(prog="edge")
    group = add_command_group(
        root.add_subparsers(dest="command"),
        "things",
        help="things",
        description="Things.",
        dest="things_command",
    )
    do = add_command(
        group,
        "do",
        help="do a thing",
        description="Do a thing\n  (this line keeps its indent).",
        func=len,
        config=True,
        args=[
            arg("name", help="which thing"),
            one_of(
                arg("--fast", action="store_true", help="quick"), arg("--slow", help="careful"), required=True
            ),
            arg("--times", type=int, default=3, help="how often"),
        ],
    )
    return root, do


def test_a_command_lists_the_site_file_first_then_its_arguments_in_order() -> None:
    root, do = _declared()
    flags = [a.option_strings or [a.dest] for a in do._actions]
    assert flags == [["-h", "--help"], ["-c", "--config"], ["name"], ["--fast"], ["--slow"], ["--times"]]
    text = do.format_help()
    usage = " ".join(text.split("\n\n")[0].split())
    assert usage == "usage: edge things do [-h] -c SITE.yaml (--fast | --slow SLOW) [--times TIMES] name"
    assert "\n  (this line keeps its indent)." in text  # the description is not re-wrapped
    assert "how often (default: 3)" in text  # every default is stated
    assert config_arg().options["help"] in " ".join(text.split())

    args = root.parse_args(["things", "do", "-c", "site.yaml", "lamp", "--fast"])
    assert (args.func, args.config, args.name, args.fast, args.times) == (len, "site.yaml", "lamp", True, 3)


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["things", "do", "lamp", "--fast"], "the following arguments are required: -c/--config"),
        (["things", "do", "-c", "s.yaml", "lamp"], "one of the arguments --fast --slow is required"),
        (["things", "do", "-c", "s.yaml", "lamp", "--fast", "--slow", "x"], "not allowed with argument"),
        (["things"], "the following arguments are required: ACTION"),
    ],
)
def test_a_command_refuses_what_its_declaration_does_not_allow(
    argv: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root, _ = _declared()
    with pytest.raises(SystemExit) as exit_info:
        root.parse_args(argv)
    assert exit_info.value.code == 2
    assert error in capsys.readouterr().err


@pytest.mark.parametrize("group", ["rules", "sync"])
def test_a_group_without_a_required_action_prints_its_help_and_exits_2(
    group: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([group]) == 2
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert capsys.readouterr().out == sub.choices[group].format_help()


@pytest.mark.parametrize(("group", "action"), [("users", "ACTION"), ("tokens", "ACTION"), ("tls", "ACTION")])
def test_a_group_with_a_required_action_names_what_is_missing(
    group: str, action: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([group])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: edge {group} ")
    assert f"the following arguments are required: {action}" in err


def test_users_unlock_reports_name_with_all_as_its_own_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site = tmp_path / "site.yaml"  # never read: the arguments are refused first
    with pytest.raises(SystemExit) as exit_info:
        main(["users", "unlock", "-c", str(site), "wang", "--all"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: edge users unlock ")
    assert "give either a user NAME or --all (not both)" in err
    assert not site.exists() and list(tmp_path.iterdir()) == []


def test_every_command_spells_the_site_file_the_same() -> None:
    with_config = []
    for cmd in COMMANDS:
        parser = build_parser()
        for part in cmd:
            sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
            parser = sub.choices[part]
        for action in parser._actions:
            if "--config" in action.option_strings or action.dest == "config":
                assert (action.option_strings, action.metavar) == (["-c", "--config"], "SITE.yaml"), cmd
                with_config.append(cmd)
    assert ("users", "add") in with_config and ("rules", "test") in with_config
