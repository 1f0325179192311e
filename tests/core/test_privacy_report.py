"""`edge privacy report`: the record of processing an auditor reads, from a real site file and a
real journal, through the `edge` command as an operator runs it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.store.helpers import sql
from tests.support.cli import edge_cli
from tests.support.site import running_site, site_file
from tests.support.waiting import until

DAY = 86400.0

SITE: dict[str, Any] = {
    "storage": {"keep_history": "7d"},
    "privacy": {"retention": {"sensitive": "30d", "personal": "90d"}},
    "devices": [
        {
            "id": "kiosk-1",
            "driver": "sim",
            "points": [{"name": "uptime", "signal": "counter"}],
            "events": [
                {
                    "kind": "blood_pressure",
                    "generator": "blood_pressure",
                    "every": "20ms",
                    "privacy": "sensitive",
                }
            ],
        },
        {
            "id": "gate-south",
            "driver": "sim",
            "points": [
                {
                    "name": "last_plate",
                    "type": "str",
                    "value": "沪A23522",
                    "interval": "50ms",
                    "privacy": "personal",
                },
                {"name": "loop_occupied", "type": "bool", "signal": "toggle", "period": 1},
            ],
            "events": [
                {"kind": "vehicle_passage", "generator": "vehicle", "every": "20ms", "privacy": "personal"}
            ],
        },
        {"id": "meter-1", "driver": "sim", "points": [{"name": "energy_import", "signal": "counter"}]},
    ],
    "upstream": [
        {
            "id": "central",
            "type": "http",
            "url": "http://127.0.0.1:9/ingest",
            "max_privacy": "personal",
            "include": {"event_kinds": ["vehicle_passage", "blood_pressure", "device_*"]},
        }
    ],
    "consumers": [
        {"id": "bms", "token_env": "BMS_TOKEN"},
        {"id": "viewer", "token_env": "VIEWER_TOKEN", "max_privacy": "public"},
    ],
}


def report(config: Path) -> dict[str, Any]:
    done = edge_cli("privacy", "report", "-c", str(config), "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def receives(items: list[dict[str, Any]], key: str, name: str, source: str | None = None) -> dict[str, str]:
    found = [i for i in items if i[key] == name and (source is None or i["source"] == source)]
    assert len(found) == 1, (name, found)
    return {rid: cell["receives"] for rid, cell in found[0]["recipients"].items()}


def test_report_says_who_receives_what_and_keeps_it_how_long(tmp_path: Path) -> None:
    config = site_file(tmp_path, SITE)
    data = report(config)

    assert [(r["id"], r["kind"], r["max_privacy"]) for r in data["recipients"]] == [
        ("central", "sink", "personal"),
        ("bms", "consumer", "personal"),
        ("viewer", "consumer", "public"),
    ]
    assert all(r["pseudonymise"] is None for r in data["recipients"])
    points = data["points"]
    assert {p["point"]: p["privacy"] for p in points} == {
        "kiosk-1.uptime": "public",
        "gate-south.last_plate": "personal",
        "gate-south.loop_occupied": "public",
        "meter-1.energy_import": "public",
    }
    # readings pass central's include (no points: filter); a personal point stops at max_privacy public
    # a personal string point goes without its value to a recipient with no pseudonym key
    assert receives(points, "point", "gate-south.last_plate") == {
        "central": "fields_withheld",
        "bms": "fields_withheld",
        "viewer": "withheld",
    }
    assert receives(points, "point", "meter-1.energy_import") == dict.fromkeys(
        ["central", "bms", "viewer"], "clear"
    )

    events = data["events"]
    assert receives(events, "kind", "blood_pressure", "kiosk-1") == dict.fromkeys(
        ["central", "bms", "viewer"], "withheld"
    )
    assert receives(events, "kind", "vehicle_passage", "gate-south") == {
        "central": "fields_withheld",
        "bms": "fields_withheld",
        "viewer": "withheld",
    }
    # the gateway's own kinds: outside central's include list, everywhere else in clear
    assert receives(events, "kind", "gateway_started", "gateway") == {
        "central": "withheld",
        "bms": "clear",
        "viewer": "clear",
    }
    assert receives(events, "kind", "device_state", "gateway")["central"] == "clear"
    bp = next(e for e in events if e["kind"] == "blood_pressure")
    assert bp["privacy"] == "sensitive" and bp["encrypted_at_rest"] is False
    why = bp["recipients"]["central"]["why"]
    assert "max_privacy personal" in why
    assert (
        "include" in next(e for e in events if e["kind"] == "gateway_started")["recipients"]["central"]["why"]
    )

    assert {c: v["retention_s"] for c, v in data["classes"].items()} == {
        "public": 7 * DAY,
        "personal": 90 * DAY,
        "sensitive": 30 * DAY,
    }
    assert next(p for p in points if p["point"] == "gate-south.last_plate")["retention_s"] == 90 * DAY
    # no journal yet: counts are absent, said so, and the report creates no journal
    assert all(v["held"] is None for v in data["classes"].values())
    assert "no journal yet" in data["held_note"]
    assert not (tmp_path / "edge.db").exists()


def test_text_report_groups_points_by_class_with_a_column_per_recipient(tmp_path: Path) -> None:
    done = edge_cli("privacy", "report", "-c", str(site_file(tmp_path, SITE)))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    personal = lines.index("Points: personal")
    assert lines[personal + 1].split() == ["id", "source", "central", "bms", "viewer"]
    assert lines[personal + 2].split() == [
        "gate-south.last_plate",
        "gate-south",
        "no-ids",
        "no-ids",
        "withheld",
    ]
    assert lines.index("Points: public") > personal
    sensitive = lines.index("Event kinds: sensitive")
    assert lines[sensitive + 2].split() == ["blood_pressure", "kiosk-1", "withheld", "withheld", "withheld"]
    assert any(line.split()[:3] == ["sensitive", "30d", "no"] for line in lines)
    assert any("encryption at rest is not wired yet" in line for line in lines)


async def test_counts_held_per_class_come_from_the_journal(tmp_path: Path) -> None:
    async with running_site(tmp_path, SITE, web=False) as rt:

        def held_both() -> bool:
            rows = sql(
                rt.journal, "SELECT count(*) FROM journal WHERE kind IN ('blood_pressure', 'vehicle_passage')"
            )
            kinds = sql(
                rt.journal,
                "SELECT DISTINCT kind FROM journal WHERE kind IN ('blood_pressure', 'vehicle_passage')",
            )
            return rows[0][0] >= 4 and len(kinds) == 2

        await until(held_both, timeout=30, what="kiosk and gate events in the journal")
    config = tmp_path / "site.yaml"
    data = report(config)

    from edge.store.journal import Journal

    j = Journal.open_readonly(str(tmp_path / "edge.db"))
    try:
        (sensitive,) = sql(j, "SELECT count(*) FROM journal WHERE kind = 'blood_pressure'")[0]
        (personal,) = sql(
            j,
            "SELECT count(*) FROM journal WHERE kind = 'vehicle_passage' OR point = 'gate-south.last_plate'",
        )[0]
        (total,) = sql(j, "SELECT count(*) FROM journal")[0]
    finally:
        j.close_sync()
    held = {c: v["held"] for c, v in data["classes"].items()}
    assert sensitive > 0 and personal > 0
    assert held == {"sensitive": sensitive, "personal": personal, "public": total - sensitive - personal}
    assert data["held_note"] == ""


def test_a_broken_site_file_gives_its_problems_and_exit_1(tmp_path: Path) -> None:
    config = site_file(
        tmp_path, {**SITE, "consumers": [{"id": "bms", "token_env": "T", "max_privacy": "secret"}]}
    )
    done = edge_cli("privacy", "report", "-c", str(config), "--json")
    assert done.returncode == 1
    assert done.stdout == ""
    assert f"{config}:" in done.stderr and "max_privacy" in done.stderr and "'secret'" in done.stderr
    assert "1 problem" in done.stderr


def test_help_documents_the_json_shape() -> None:
    done = edge_cli("privacy", "report", "--help")
    assert done.returncode == 0
    for word in (
        "--json",
        "held",
        "receives",
        "withheld",
        "pseudonymised",
        "retention_s",
        "encrypted_at_rest",
    ):
        assert word in done.stdout


def test_a_rule_packs_alerts_take_the_class_of_their_trigger(tmp_path: Path) -> None:
    (tmp_path / "gate.yaml").write_text(
        "rules:\n"
        "  - id: plate-seen\n"
        "    when: gate-south.last_plate\n"
        "    then:\n"
        "      - alert: 'plate {value}'\n"
        "  - id: meter-high\n"
        "    when: meter-*.energy_import\n"
        "    if: value > 10\n"
        "    then:\n"
        "      - event: {kind: energy_high, message: high}\n",
        encoding="utf-8",
    )
    data = report(site_file(tmp_path, {**SITE, "rules": {"packs": ["gate.yaml"]}}))
    alert = next(e for e in data["events"] if e["kind"] == "alert")
    assert (alert["privacy"], alert["source"]) == ("personal", "rules (gate.yaml)")
    # alert is outside central's include list; the public consumer may not see a plate; bms, with
    # no pseudonym key, gets the alert without its value (the plate), as its shaper sends it
    assert receives(data["events"], "kind", "alert") == {
        "central": "withheld",
        "bms": "fields_withheld",
        "viewer": "withheld",
    }
    energy = next(e for e in data["events"] if e["kind"] == "energy_high")
    assert energy["privacy"] == "public"
    assert receives(data["events"], "kind", "energy_high")["viewer"] == "clear"


def test_an_acknowledgement_takes_the_class_of_the_most_private_alert(tmp_path: Path) -> None:
    """An acknowledgement names its user and its comment may quote the alert: personal, or
    sensitive where a rule can raise a health alert."""
    assert (
        next(e for e in report(site_file(tmp_path, SITE))["events"] if e["kind"] == "alert_ack")["privacy"]
        == "personal"
    )
    (tmp_path / "health.yaml").write_text(
        "rules:\n"
        "  - id: bp-high\n"
        "    when: kiosk-2.systolic\n"
        "    if: value > 180\n"
        "    then:\n"
        "      - alert: 'systolic {value}'\n",
        encoding="utf-8",
    )
    kiosk = {
        "id": "kiosk-2",
        "driver": "sim",
        "points": [{"name": "systolic", "privacy": "sensitive", "signal": "constant", "value": 120}],
    }
    site = {**SITE, "devices": [*SITE["devices"], kiosk], "rules": {"packs": ["health.yaml"]}}
    data = report(site_file(tmp_path, site, name="health-site.yaml"))
    assert next(e for e in data["events"] if e["kind"] == "alert")["privacy"] == "sensitive"
    ack = next(e for e in data["events"] if e["kind"] == "alert_ack")
    assert ack["privacy"] == "sensitive" and ack["recipients"]["bms"]["receives"] == "withheld"
    assert {"dead_letters_expired", "alert_acks_expired"} <= {e["kind"] for e in data["events"]}
