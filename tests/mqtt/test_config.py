"""The mqtt upstream entry: defaults derived from the site, and bad keys refused with a message
naming the key, its line and what is accepted."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.config import ConfigError
from tests.mqtt.broker import mqtt_sink
from tests.support.site import load, running_site


def error(tmp_path: Path, **extra: object) -> str:
    with pytest.raises(ConfigError) as exc:
        load(tmp_path, {"upstream": [mqtt_sink(1883, **extra)]})
    return str(exc.value)


def test_defaults(tmp_path: Path) -> None:
    cfg = load(tmp_path, {"upstream": [{"id": "hub", "type": "mqtt", "host": "broker.example"}]}).upstream[0]
    assert cfg.url == "mqtt://broker.example:1883"  # type: ignore[attr-defined]
    assert cfg.clean_start is False and cfg.protocol == "5" and cfg.qos == 1  # type: ignore[attr-defined]
    tls = load(
        tmp_path, {"upstream": [{"id": "hub", "type": "mqtt", "host": "b", "tls": {}, "protocol": 3.1}]}
    )
    assert tls.upstream[0].url == "mqtts://b:8883" and tls.upstream[0].protocol == "3.1.1"  # type: ignore[attr-defined]


def test_bad_keys_are_refused_with_what_is_accepted(tmp_path: Path) -> None:
    msg = error(tmp_path, protocol="4")
    assert "protocol" in msg and "3.1.1 or 5" in msg and "site.yaml" in msg
    msg = error(tmp_path, point_topic="x/{site}/{room}")
    assert "{room}" in msg and "{device}" in msg
    assert "wildcard" in error(tmp_path, topic="edge/#")
    assert "password_env" in error(tmp_path, token_env="T")
    assert "tls:" in error(tmp_path, ca_file="/x.pem")
    assert "username" in error(tmp_path, password_file="/x")
    assert "1KiB to 256MiB" in error(tmp_path, max_message_bytes=10)
    assert "gzip_level" in error(tmp_path, gzip_level=6)
    assert "qos" in error(tmp_path, qos=0)
    assert "cert_file" in error(tmp_path, tls={"key_file": "/k.pem"})
    # a password is never written in the site file itself
    assert "password_file" in error(tmp_path, username="u", password="p")


async def test_missing_password_file_names_it(tmp_path: Path) -> None:
    doc = {"upstream": [mqtt_sink(1883, username="u", password_file=str(tmp_path / "nope"))]}
    with pytest.raises(ConfigError, match=r"nope.*cannot read secret file"):
        async with running_site(tmp_path, doc, web=False):
            pass
