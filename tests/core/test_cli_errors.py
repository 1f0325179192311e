"""The `edge` command refuses bad paths and out-of-range values with one `error: ...` line, never a
traceback: a path that cannot be written or read (a missing directory, a directory where a file is
wanted) exits 1 naming the path; a value outside its range is a usage error (exit 2) refused before
anything is written. Run as real processes on a site that has run."""

from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from edge.api.tokens import list_tokens
from edge.cli import build_parser
from edge.config import load_site
from edge.privacy.keyfile import create_master_key
from edge.state import StateDB
from tests.privacy.conftest import RESIDENT, site_doc
from tests.support.cli import edge_cli
from tests.support.site import running_site, site_file
from tests.support.waiting import until_async

ROOT = Path(__file__).resolve().parents[2]
PACK = ROOT / "deploy" / "rules" / "waste.yaml"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sealed site (a privacy master key) whose journal holds records: its site file."""
    tmp = tmp_path_factory.mktemp("site")
    master = tmp / "master.key"
    create_master_key(master)

    async def run() -> None:
        async with running_site(tmp, site_doc(master), web=False) as rt:

            async def journaled() -> bool:
                await rt.journal.flush()
                return bool(rt.journal.read(0, 10))

            await until_async(journaled, what="the kiosk's first records in the journal")

    asyncio.run(run())
    return site_file(tmp, site_doc(master))


def files_under(path: Path) -> set[Path]:
    return set(path.rglob("*"))


def refused(done: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    """Exit status `code`, no traceback, and exactly one `error:` line holding every one of `words`."""
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == code, done.stderr
    errors = [line for line in done.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, done.stderr
    for word in words:
        assert word in errors[0], done.stderr


def missing_dir(tmp: Path) -> tuple[Path, str]:
    return tmp / "nodir" / "out.file", "no such directory"


def a_dir(tmp: Path) -> tuple[Path, str]:
    (tmp / "dir").mkdir()
    return tmp / "dir", "Is a directory"


OUTPUTS: dict[str, Callable[[Path, Path], list[str]]] = {
    "privacy export": lambda config, out: [
        "privacy", "export", "-c", str(config), "--subject", RESIDENT, "--out", str(out)
    ],
    "rules export": lambda config, out: ["rules", "export", "-c", str(config), "--output", str(out)],
    "kpi export": lambda config, out: ["kpi", "export", "-c", str(config), "--output", str(out)],
    "rules test": lambda config, out: ["rules", "test", str(PACK), "-i", str(out)],
}  # fmt: skip


@pytest.mark.parametrize("where", [missing_dir, a_dir], ids=["missing-dir", "a-dir"])
@pytest.mark.parametrize("command", sorted(OUTPUTS))
def test_a_path_that_cannot_be_used_is_one_error_line_naming_it(
    site: Path, tmp_path: Path, command: str, where: Callable[[Path], tuple[Path, str]]
) -> None:
    path, problem = where(tmp_path)
    before = files_under(tmp_path)
    done = edge_cli(*OUTPUTS[command](site, path))
    refused(done, 1, str(path), problem)
    assert files_under(tmp_path) == before  # no directory made, nothing written


def test_a_records_line_that_is_not_utf8_is_skipped_and_counted(tmp_path: Path) -> None:
    records = tmp_path / "records.jsonl"
    good = b'{"ts": 1700000000, "type": "reading", "point": "bin-1.fill_pct", "value": 10}\n'
    records.write_bytes(good + b"\xff\xfe not text\n" + good)
    done = edge_cli("rules", "test", str(PACK), "-i", str(records))
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert f"{records}:2: skipped" in done.stderr
    assert "1 line skipped" in done.stderr


def test_a_token_id_beyond_sqlite_integers_is_a_usage_error(site: Path) -> None:
    refused(edge_cli("tokens", "revoke", "-c", str(site), "99999999999999999999999"), 2, "out of range")
    refused(edge_cli("tokens", "revoke", "-c", str(site), "0"), 2, "out of range")


def test_a_token_needs_a_name(site: Path) -> None:
    for name in ("", "   "):
        refused(edge_cli("tokens", "create", "-c", str(site), name), 2, "name", "must not be empty")
    state = StateDB(load_site(site).storage.resolved_state_path())
    try:
        assert list_tokens(state) == []
    finally:
        state.close()


@pytest.mark.parametrize("days", ["-5", "0", "99999999"])
def test_a_certificate_validity_out_of_range_writes_nothing(tmp_path: Path, days: str) -> None:
    out = tmp_path / "tls"
    refused(edge_cli("tls", "selfsigned", "--out", str(out), "--days", days), 2, "--days", days)
    assert not out.exists()


def test_a_certificate_needs_a_directory_and_names(tmp_path: Path) -> None:
    file = tmp_path / "taken"
    file.write_text("mine")
    refused(edge_cli("tls", "selfsigned", "--out", str(file)), 1, str(file), "not a directory")
    assert file.read_text() == "mine"
    out = tmp_path / "tls"
    refused(edge_cli("tls", "selfsigned", "--out", str(out), "--name", ""), 2, "--name", "must not be empty")
    assert not out.exists()


def test_a_new_master_key_needs_a_file_in_an_existing_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nodir" / "sub" / "master.key"
    refused(edge_cli("privacy", "new-key", str(missing)), 1, str(missing), "no such directory")
    assert not (tmp_path / "nodir").exists()
    (tmp_path / "keys").mkdir()
    refused(edge_cli("privacy", "new-key", str(tmp_path / "keys")), 1, "a directory", "master.key")
    assert list((tmp_path / "keys").iterdir()) == []


def test_a_token_file_that_is_not_text_is_a_bad_token_file(site: Path, tmp_path: Path) -> None:
    binary = tmp_path / "status.token"
    binary.write_bytes(b"\xff\xfe\x00\x81token")
    refused(
        edge_cli("status", "-c", str(site), "--token-file", str(binary)), 2, str(binary), "not a text file"
    )


def test_a_backup_into_a_directory_names_the_directory_only(site: Path, tmp_path: Path) -> None:
    done = edge_cli("backup", "-c", str(site), "--out", str(tmp_path))
    refused(done, 1, str(tmp_path), "a directory")
    assert ".edge-backup" not in done.stderr
    assert list(tmp_path.iterdir()) == []


def _parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    out = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                out.extend(_parsers(sub))
    return out


def test_help_states_a_default_only_where_there_is_one() -> None:
    parsers = _parsers(build_parser())
    assert len(parsers) > 40
    for parser in parsers:
        text = " ".join(parser.format_help().split())
        assert "(default: None)" not in text, parser.prog
        assert not re.search(r"\(default: [^)]*\) \(default:", text), parser.prog  # stated twice
        assert "(default: False)" not in text, parser.prog  # a flag is on or off
    text = " ".join(edge_cli("tls", "selfsigned", "--help").stdout.split())
    assert "(default: 3650)" in text


@pytest.mark.parametrize("n", ["0", "-1", "1000001"])
def test_buffer_tail_refuses_a_count_out_of_range(tmp_path: Path, n: str) -> None:
    """`edge buffer tail -n 0` printed nothing with status 0: a count out of range is a usage error."""
    config = site_file(tmp_path, {"devices": []})
    done = edge_cli("buffer", "tail", "-c", str(config), "-n", n)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"{n} is out of range: give 1 to 100000" in done.stderr
