"""The CLI reads like a product: counts in the right number, `buffer stats` durations in days and
hours, `buffer tail` times in the site's zone with its offset and values without float32 noise;
`edge check` reports every problem of a device whose profile is unknown, and a duration with a
space between number and unit means what it says while a space inside a unit is refused."""

from __future__ import annotations

from pathlib import Path

from edge.commands import format_health
from edge.config import load_site
from edge.model import Reading
from tests.support.cli import edge_cli
from tests.support.site import running_site, site_file

SIM = {
    "id": "meter-1",
    "driver": "sim",
    "points": [{"name": "p", "signal": "constant", "value": 1, "interval": "1h"}],
}


def test_check_counts_in_words_of_the_right_number(tmp_path: Path) -> None:
    proc = edge_cli("check", "-c", str(site_file(tmp_path, {"devices": [SIM]})))
    assert proc.returncode == 0, proc.stderr
    assert "1 device, 1 point, 0 upstream sinks, 0 pull consumers" in proc.stdout


def test_an_unknown_profile_does_not_hide_the_devices_other_problems(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(
        "site: {id: t}\n"
        "devices:\n"
        "  - id: meter-1\n"
        "    profile: chint-dtsu999\n"
        "    connection: {transport: tcp, host: 127.0.0.1}\n"
        "    pol: 5s\n"
        "    timeout: 5 m s\n"
        "  - id: gate-1\n"
        "    profile: no-such-thing\n"
        "    driver: modbus\n"
        "    unit: banana\n",
        encoding="utf-8",
    )
    proc = edge_cli("check", "-c", str(site))
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert [line.split(": ")[1] for line in lines[:-1]] == [
        "devices[0].profile",
        "devices[0].pol",
        "devices[0].timeout",
        "devices[1].profile",
        "devices[1].unit",
    ], proc.stderr
    assert "unknown profile 'chint-dtsu999'" in lines[0]
    assert "like profile 'chint-dtsu666'" in lines[1]
    assert "'s' after '5 m'" in lines[2]
    assert "required" not in proc.stderr  # the keys a profile would give are not asked for


def test_a_duration_may_put_a_space_between_number_and_unit_only(tmp_path: Path) -> None:
    points = [
        {"name": "a", "signal": "constant", "value": 1, "interval": "5 s"},
        {"name": "b", "signal": "constant", "value": 1, "interval": "1h 30m"},
    ]
    site = load_site(site_file(tmp_path, {"devices": [{"id": "m", "driver": "sim", "points": points}]}))
    assert [p.interval for p in site.devices[0].points] == [5.0, 5400.0]  # type: ignore[attr-defined]
    bad = [{"name": "a", "signal": "constant", "value": 1, "interval": "5 m s"}]
    proc = edge_cli(
        "check", "-c", str(site_file(tmp_path, {"devices": [{"id": "m", "driver": "sim", "points": bad}]}))
    )
    assert proc.returncode == 1 and "invalid duration '5 m s'" in proc.stderr


def test_buffer_stats_durations_read_in_days_and_hours() -> None:
    text = format_health({"rows": 3, "time_until_full_s": 738183.2, "ingest_rate": 12.3456})
    assert "time until full 8 d 13 h" in text and "ingest rate     12.3 records/s" in text
    assert "738183" not in text


async def test_buffer_tail_shows_the_sites_time_and_rounded_values(tmp_path: Path) -> None:
    doc = {"site": {"id": "t", "name": "t", "timezone": "Asia/Shanghai"}, "devices": [SIM]}
    ts = 1_765_000_000.0  # 2025-12-06 13:46:40 in Shanghai, 05:46:40 UTC
    async with running_site(tmp_path, doc) as rt:
        rt.hub.ingest([Reading(ts, "meter-1.p", 1744.71015625)])
        await rt.journal.flush()
    proc = edge_cli("buffer", "tail", "-c", str(tmp_path / "site.yaml"), "-n", "50")
    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stdout.splitlines() if "1744" in x)
    assert "2025-12-06 13:46:40 +08:00" in line and " 1744.71 " in line and "1744.71015625" not in line


def test_rules_check_counts_one_rule_as_one(tmp_path: Path) -> None:
    pack = tmp_path / "one.yaml"
    pack.write_text("rules:\n  - id: a\n    when: m-1.p\n    if: value > 1\n", encoding="utf-8")
    proc = edge_cli("rules", "check", str(pack))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"{pack}: 1 rule OK"
