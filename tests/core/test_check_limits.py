"""`edge check` refuses what the gateway would then refuse or mishandle, each problem located
(FILE:LINE: KEY: MESSAGE) and counted, never a traceback: numbers that are not finite (`.inf`,
`.nan`, a number past what a float holds) and files the site names that cannot be used (missing,
unreadable, a secret others may read or that is empty, half-given web TLS). A SIGHUP reload runs
the same checks and refuses such a file, changing nothing."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge.yamlpos import load as load_yaml
from tests.core.test_service import SITE, NotifySocket, _records, _start
from tests.support.cli import edge_cli
from tests.support.procs import stop_process, terminate
from tests.support.site import site_file
from tests.support.waiting import until_sync

YamlPath = tuple[str | int, ...]


def sim(**point: Any) -> dict[str, Any]:
    return {"id": "m", "driver": "sim", "points": [{"name": "p", "signal": "ramp", **point}]}


def modbus(poll: Any = "5s", **point: Any) -> dict[str, Any]:
    return {
        "id": "mb",
        "driver": "modbus",
        "connection": {"transport": "tcp", "host": "127.0.0.1", "port": 5020},
        "poll": poll,
        "points": [{"name": "e", "address": 0, **point}],
    }


POINT = ("devices", 0, "points", 0)
INF, NAN = float("inf"), float("nan")

NOT_FINITE: list[tuple[str, dict[str, Any], YamlPath]] = [
    ("max_bytes-inf", {"storage": {"max_bytes": INF}}, ("storage", "max_bytes")),
    ("max_bytes-long-number", {"storage": {"max_bytes": "9" * 400 + "MiB"}}, ("storage", "max_bytes")),
    ("disk_reserve-nan", {"storage": {"disk_reserve": NAN}}, ("storage", "disk_reserve")),
    ("keep_history-inf", {"storage": {"keep_history": INF}}, ("storage", "keep_history")),
    ("interval-nan", {"devices": [sim(interval=NAN)]}, (*POINT, "interval")),
    ("interval-long-number", {"devices": [sim(interval="9" * 400 + "s")]}, (*POINT, "interval")),
    # a YAML integer of 400 digits: no float holds it (isfinite itself raised OverflowError)
    ("keep_history-long-int", {"storage": {"keep_history": 10**400}}, ("storage", "keep_history")),
    ("period-inf", {"devices": [sim(period=INF)]}, (*POINT, "period")),
    ("report_every-nan", {"devices": [sim(report_every=NAN)]}, (*POINT, "report_every")),
    ("max-inf", {"devices": [sim(max=INF)]}, (*POINT, "max")),
    ("max-1e400", {"devices": [sim(max="1e400")]}, (*POINT, "max")),
    ("deadband-inf", {"devices": [sim(deadband=INF)]}, (*POINT, "deadband")),
    ("modbus-poll-inf", {"devices": [modbus(poll=INF)]}, ("devices", 0, "poll")),
    ("modbus-scale-nan", {"devices": [modbus(scale=NAN)]}, (*POINT, "scale")),
    ("clock-max_step-inf", {"clock": {"trust_unsynced": True, "max_step": INF}}, ("clock", "max_step")),
]


def _line(config: Path, path: YamlPath) -> int:
    _, pos = load_yaml(config.read_text(encoding="utf-8"), str(config))
    line = pos.lines.get(path)
    assert line is not None, f"{path} not in {config}"
    return line


def _refused(proc: subprocess.CompletedProcess[str], n: int) -> str:
    """stderr of a refused `edge check`: exit 1, `n` problems counted, no traceback."""
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    assert f": {n} problem{'s' if n != 1 else ''}\n" in proc.stderr, out[-3000:]
    return proc.stderr


@pytest.mark.parametrize(("doc", "path"), [c[1:] for c in NOT_FINITE], ids=[c[0] for c in NOT_FINITE])
def test_edge_check_refuses_a_number_that_is_not_finite(
    tmp_path: Path, doc: dict[str, Any], path: YamlPath
) -> None:
    config = site_file(tmp_path, doc)
    err = _refused(edge_cli("check", "-c", str(config)), 1)
    key = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")
    assert f"{config}:{_line(config, path)}: {key}: " in err, err
    assert "a finite number" in err, err


def test_a_size_or_duration_too_long_for_a_float_is_a_located_error_for_every_command(tmp_path: Path) -> None:
    """Every command that reads the site file reports it, not only `edge check`."""
    config = site_file(tmp_path, {"storage": {"max_bytes": "1" + "0" * 400}})
    for args in (["doctor", "-c", str(config)], ["buffer", "stats", "-c", str(config)]):
        proc = edge_cli(*args)
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0 and "Traceback" not in out, out[-3000:]
        assert f"{config}:{_line(config, ('storage', 'max_bytes'))}: storage.max_bytes: " in out, out


def _secret(path: Path, text: str = "a-pull-token-long-enough-for-any-check-0123456789\n") -> Path:
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return path


def test_edge_check_refuses_missing_unreadable_and_open_files_the_site_names(tmp_path: Path) -> None:
    token = _secret(tmp_path / "ok.token")
    _secret(tmp_path / "group.token").chmod(0o640)  # root-owned, read through the gateway's group
    open_token = _secret(tmp_path / "open.token")
    open_token.chmod(0o644)
    empty = _secret(tmp_path / "empty.token", "\n")
    doc = {
        "consumers": [
            {"id": "a", "token_file": str(token)},
            {"id": "b", "token_file": str(tmp_path / "missing.token")},
            {"id": "c", "token_file": str(open_token)},
            {"id": "d", "token_file": str(empty)},
            {"id": "e", "token_file": str(tmp_path / "group.token")},
        ],
        "web": {"tls_cert": str(tmp_path / "missing.crt"), "tls_key": str(tmp_path / "missing.key")},
    }
    config = site_file(tmp_path, doc)
    err = _refused(edge_cli("check", "-c", str(config)), 5)

    def at(*path: str | int) -> str:
        key = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")
        return f"{config}:{_line(config, path)}: {key}: "

    assert f"{at('consumers', 1, 'token_file')}{tmp_path / 'missing.token'}: cannot read secret file" in err
    assert (
        f"{at('consumers', 2, 'token_file')}{open_token}: secret file has mode 0644: every user of the box can read it"
        in err
    )
    assert f"chmod 600 {open_token}" in err
    assert f"{at('consumers', 3, 'token_file')}{empty}: secret file is empty" in err
    assert f"{at('web', 'tls_cert')}{tmp_path / 'missing.crt'}: cannot read file" in err
    assert f"{at('web', 'tls_key')}{tmp_path / 'missing.key'}: cannot read secret file" in err
    assert "consumers[0]" not in err and "consumers[4]" not in err  # 0600 and 0640 tokens are fine


def test_edge_check_refuses_half_given_web_tls_and_accepts_a_pair_that_loads(tmp_path: Path) -> None:
    made = edge_cli("tls", "selfsigned", "--out", str(tmp_path / "tls"), "--name", "gw.local")
    assert made.returncode == 0, made.stderr
    cert, key = tmp_path / "tls" / "edge.crt", tmp_path / "tls" / "edge.key"
    config = site_file(tmp_path, {"web": {"tls_cert": str(cert)}})
    err = _refused(edge_cli("check", "-c", str(config)), 1)
    assert (
        f"{config}:{_line(config, ('web', 'tls_cert'))}: web.tls_cert: web.tls_cert needs web.tls_key" in err
    )

    other = tmp_path / "other"
    assert edge_cli("tls", "selfsigned", "--out", str(other)).returncode == 0
    config = site_file(tmp_path, {"web": {"tls_cert": str(cert), "tls_key": str(other / "edge.key")}})
    err = _refused(edge_cli("check", "-c", str(config)), 1)
    assert "web.tls_cert: " in err and "cannot load this certificate and key" in err

    config = site_file(tmp_path, {"web": {"tls_cert": str(cert), "tls_key": str(key)}})
    proc = edge_cli("check", "-c", str(config))
    assert proc.returncode == 0, proc.stderr
    assert ": ok — " in proc.stdout


def test_edge_check_locates_a_missing_master_key_and_counts_it(tmp_path: Path) -> None:
    missing = tmp_path / "master.key"
    config = site_file(tmp_path, {"privacy": {"master_key_file": str(missing)}})
    err = _refused(edge_cli("check", "-c", str(config)), 1)
    line = _line(config, ("privacy", "master_key_file"))
    assert f"{config}:{line}: privacy.master_key_file: {missing}: " in err, err
    assert err.splitlines()[-1] == f"{config}: 1 problem"


def test_sighup_refuses_what_edge_check_refuses_and_changes_nothing(tmp_path: Path) -> None:
    """A new device beside a master key that cannot be read, then beside a size that is not
    finite: both reloads refused with the located problem, the new device never started; the
    file made good is applied."""
    config = site_file(tmp_path, SITE)
    good = yaml.safe_load(config.read_text(encoding="utf-8"))
    new_device = {
        "id": "newdev",
        "driver": "sim",
        "points": [{"name": "p", "signal": "ramp", "interval": "20ms"}],
    }
    notify = NotifySocket(tmp_path / "notify.sock")
    proc = _start(config, {"NOTIFY_SOCKET": str(notify.path)})

    def readies() -> int:  # READY=1 at start and again after each reload, refused or not
        return sum("READY=1" in m for m in notify.poll())

    missing = tmp_path / "master.key"
    try:
        until_sync(lambda: readies() >= 1, timeout=30, what="READY=1")
        keyless = {
            **good,
            "devices": [*good["devices"], new_device],
            "privacy": {"master_key_file": str(missing)},
        }
        config.write_text(yaml.safe_dump(keyless, sort_keys=False), encoding="utf-8")
        key_line = _line(config, ("privacy", "master_key_file"))
        proc.send_signal(signal.SIGHUP)
        until_sync(lambda: readies() >= 2, timeout=30, what="READY=1 after the reload with a missing key")

        endless = {**good, "devices": [*good["devices"], new_device]}
        endless["storage"] = {**good["storage"], "max_bytes": INF}
        config.write_text(yaml.safe_dump(endless, sort_keys=False), encoding="utf-8")
        size_line = _line(config, ("storage", "max_bytes"))
        proc.send_signal(signal.SIGHUP)
        until_sync(lambda: readies() >= 3, timeout=30, what="READY=1 after the reload with an endless size")
        n = len(_records(tmp_path / "edge.db"))
        until_sync(
            lambda: len(_records(tmp_path / "edge.db")) > n + 20, what="still running after the refusals"
        )
        assert not any(r[1] and r[1].startswith("newdev.") for r in _records(tmp_path / "edge.db"))

        config.write_text(
            yaml.safe_dump({**good, "devices": [*good["devices"], new_device]}), encoding="utf-8"
        )
        proc.send_signal(signal.SIGHUP)
        until_sync(
            lambda: any(r[1] == "newdev.p" for r in _records(tmp_path / "edge.db")),
            timeout=30,
            what="the device added by the good file reporting",
        )
        out = terminate(proc)
    finally:
        stop_process(proc)
        notify.close()
    assert proc.returncode == 0, out[-3000:]
    assert "Traceback" not in out and "reload failed" not in out, out[-3000:]
    assert out.count("reload refused: the site file has errors; nothing changed") == 2, out[-3000:]
    assert f"{config}:{key_line}: privacy.master_key_file: {missing}: " in out, out[-3000:]
    assert f"{config}:{size_line}: storage.max_bytes: a size must be a finite number of bytes" in out
    assert out.count('msg="site file reloaded"') == 1 and "added=newdev" in out
