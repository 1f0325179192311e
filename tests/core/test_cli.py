"""The `edge` command: complete --help everywhere, the demo end to end, buffer stats and tail."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from edge.cli import COMMAND_MODULES, build_parser
from tests.core.test_file_modes import not_private
from tests.support.cli import edge_cli
from tests.support.ports import free_port
from tests.support.procs import terminate
from tests.support.waiting import until_sync

ROOT = Path(__file__).resolve().parents[2]


def _commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out.append((*prefix, name))
                out.extend(_commands(sub, (*prefix, name)))
    return out


COMMANDS = _commands(build_parser())


def test_core_commands_exist() -> None:
    for cmd in [("run",), ("check",), ("demo",), ("buffer", "stats"), ("buffer", "tail")]:
        assert cmd in COMMANDS


@pytest.mark.parametrize("cmd", COMMANDS, ids=[" ".join(c) for c in COMMANDS])
def test_every_command_has_a_complete_help(cmd: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    from edge.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main([*cmd, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: edge " + " ".join(cmd))
    body = out.split("\n\n", 2)
    assert len(body) >= 2 and body[1].strip(), f"`edge {' '.join(cmd)} --help` has no description"
    parser = build_parser()
    for part in cmd:  # every option is explained
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[part]
    assert parser.description, f"`edge {' '.join(cmd)}` has no description"
    for action in parser._actions:
        if action.dest != "help" and not isinstance(action, argparse._SubParsersAction):
            name = action.option_strings or [action.dest]
            assert action.help, f"`edge {' '.join(cmd)}` argument {name} has no help"


def test_demo_brings_up_a_site_with_every_device_reporting(tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "demo"
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "demo", "--data-dir", str(data), "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        umask=0o022,  # a login shell's: the demo's files must be private all the same
    )
    try:

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
                    return json.load(resp)["status"] == "ok"
            except OSError:
                return False

        until_sync(healthy, timeout=60, what="/healthz of the demo")
        site = data / "site.yaml"
        assert edge_cli("check", "-c", str(site)).returncode == 0

        def all_devices_flowing() -> dict | None:
            proc_stats = edge_cli("buffer", "stats", "-c", str(site), "--json")
            stats = json.loads(proc_stats.stdout)
            devices = stats["devices"]
            return stats if all(d["recent_readings"] > 0 for d in devices.values()) else None

        stats = until_sync(all_devices_flowing, timeout=30, what="readings from every demo device")
        assert len(stats["devices"]) >= 8
        assert stats["rows"] > 0 and stats["bytes"] > 0
        human = edge_cli("buffer", "stats", "-c", str(site))
        assert "meter-b1" in human.stdout and "readings, newest" in human.stdout
        tail = edge_cli("buffer", "tail", "-c", str(site), "-n", "15", "--json")
        records = [json.loads(line) for line in tail.stdout.splitlines()]
        assert len(records) == 15
        for rec in records:
            if rec["type"] == "reading":
                assert set(rec) == {"seq", "ts", "type", "point", "value", "quality"}
                assert rec["quality"] in ("good", "bad", "stale")
            else:
                assert set(rec) == {"seq", "ts", "type", "kind", "source", "severity", "payload"}
        seqs = [r["seq"] for r in records]
        assert seqs == sorted(seqs)
    finally:
        out = terminate(proc, timeout=20)
    assert proc.returncode == 0, out[-3000:]
    assert "demo site running: open http://127.0.0.1:" in out
    token_file = data / "city-platform.token"
    token = token_file.read_text().strip()
    assert token not in out  # a log line is copied into tickets: a prefix and where the token is
    assert (
        f"pull API token for consumer city-platform: {token[:9]}…, the whole token is in {token_file}" in out
    )
    assert (data / "blobs").is_dir()  # the camera's snapshot directory
    assert not_private(data) == []  # journal, state, trend, WAL, site file, video, token, snapshots


def test_buffer_commands_explain_a_missing_journal(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(f"site: {{id: nothing-yet}}\nstorage: {{path: {tmp_path / 'edge.db'}}}\n")
    proc = edge_cli("buffer", "stats", "-c", str(site))
    assert proc.returncode == 1
    assert "no journal yet" in proc.stderr


def _parsers(
    parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
) -> dict[tuple[str, ...], argparse.ArgumentParser]:
    """Every command's parser under `parser`, by its words."""
    out = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out[(*prefix, name)] = sub
                out.update(_parsers(sub, (*prefix, name)))
    return out


@pytest.mark.parametrize("module", list(COMMAND_MODULES))
def test_each_core_command_module_declares_the_commands_it_is_listed_with(module: str) -> None:
    """`edge NAME` imports the module listed with NAME alone: a command it does not list would be
    parsed by another module's parser, or not at all."""
    sub = argparse.ArgumentParser(prog="edge").add_subparsers()
    importlib.import_module(module).register(sub)
    assert tuple(sub.choices) == COMMAND_MODULES[module]


CORE = [name for names in COMMAND_MODULES.values() for name in names]


@pytest.mark.parametrize("command", CORE)
def test_a_core_command_parses_and_helps_alike_with_its_module_alone(command: str) -> None:
    everything = {k: p for k, p in _parsers(build_parser()).items() if k[0] == command}
    alone = _parsers(build_parser(command))
    assert set(everything) <= set(alone)
    for words, parser in everything.items():
        assert alone[words].format_help() == parser.format_help(), words
        assert alone[words].get_default("func") == parser.get_default("func"), words
    # and the parser built for it holds no plugin's command
    plugin_commands = {c[0] for c in COMMANDS} - set(CORE)
    assert plugin_commands and not plugin_commands & {k[0] for k in alone}


def test_edge_help_lists_every_command_with_its_line(capsys: pytest.CaptureFixture[str]) -> None:
    from edge.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    lines = {c.dest: " ".join(str(c.help).split()) for c in sub._choices_actions}
    assert set(lines) == {c[0] for c in COMMANDS if len(c) == 1}
    text = " ".join(out.split())
    for name, line in lines.items():
        assert f"{name} {line}" in text, name
