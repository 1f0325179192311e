"""`edge check` refuses mqtt sinks that would step on each other: two command-enabled sinks on one
broker subscribed to the same command topic (every command would run twice), two devices a
thingsboard sink would give one ThingsBoard name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.mqtt.broker import mqtt_sink
from tests.support.cli import edge_cli
from tests.support.site import site_file


def check(tmp_path: Path, doc: dict[str, Any]) -> tuple[int, str]:
    done = edge_cli("check", "-c", str(site_file(tmp_path, doc)))
    return done.returncode, done.stderr


def test_two_command_sinks_on_one_broker_and_topic_are_refused(tmp_path: Path) -> None:
    doc = {
        "upstream": [
            mqtt_sink(1883, id="a", commands=True, status_topic="edge/{site}/{sink}/status"),
            mqtt_sink(1883, id="b", commands=True, status_topic="edge/{site}/{sink}/status"),
        ]
    }
    code, err = check(tmp_path, doc)
    assert code == 1
    assert "sinks a and b both take commands from 'edge/test-site/commands'" in err, err
    assert "127.0.0.1:1883" in err and "run twice" in err
    assert "site.yaml:" in err  # located at the second sink's entry
    # each its own topic, or another broker, or commands on one of them only: fine
    for second in (
        {"command_topic": "edge/{site}/{sink}/commands"},
        {"port": 1884},
        {"commands": False},
        {"enabled": False},
    ):
        b = mqtt_sink(1883, id="b", commands=True, status_topic="edge/{site}/{sink}/status")
        b.update(second)
        code, err = check(tmp_path, {"upstream": [doc["upstream"][0], b]})
        assert code == 0, (second, err)


def sim(device_id: str, name: str | None = None) -> dict[str, Any]:
    device: dict[str, Any] = {
        "id": device_id,
        "driver": "sim",
        "points": [{"name": "t", "signal": "random", "min": 0, "max": 1, "interval": "1s"}],
    }
    if name is not None:
        device["name"] = name
    return device


def test_devices_thingsboard_would_know_by_one_name_are_refused(tmp_path: Path) -> None:
    tb = mqtt_sink(1883, id="tb", format="thingsboard", commands=True)
    doc = {"devices": [sim("boiler", "Boiler"), sim("boiler2", "Boiler")], "upstream": [tb]}
    code, err = check(tmp_path, doc)
    assert code == 1
    assert "devices boiler and boiler2 are both 'Boiler' to ThingsBoard" in err, err
    # a name that is another device's id (which is its ThingsBoard name when it has none)
    doc["devices"] = [sim("boiler"), sim("boiler2", "boiler")]
    code, err = check(tmp_path, doc)
    assert code == 1 and "devices boiler and boiler2 are both 'boiler'" in err, err
    # names of their own, or no thingsboard sink: fine
    doc["devices"] = [sim("boiler", "Boiler"), sim("boiler2", "Boiler 2")]
    assert check(tmp_path, doc)[0] == 0
    doc["devices"] = [sim("boiler", "Boiler"), sim("boiler2", "Boiler")]
    doc["upstream"] = [mqtt_sink(1883, id="plain")]
    assert check(tmp_path, doc)[0] == 0
