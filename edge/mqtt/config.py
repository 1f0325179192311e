"""The `type: mqtt` upstream entry (light: `edge check` imports this without the MQTT client)."""

from __future__ import annotations

import string
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from edge.sync.sink_config import PushSinkConfig
from edge.units import Duration, Size
from edge.validation import SitePath, Strict

#: the placeholders each topic template may use
TOPIC_FIELDS = {
    "topic": {"site", "sink"},
    "status_topic": {"site", "sink"},
    "point_topic": {"site", "sink", "device", "point"},
    "event_topic": {"site", "sink", "kind", "source"},
    "command_topic": {"site", "sink"},
    "response_topic": {"site", "sink"},
}
MIN_MESSAGE = 1024
MAX_MESSAGE = 256 * 1024 * 1024  # the MQTT protocol's own limit on a packet
MAX_COMMAND_TTL = 3600.0  # s: the longest command_ttl, so no request is kept past twice this


class TlsConfig(Strict):
    """TLS to the broker: a custom CA (else the system's) and a client certificate."""

    ca_file: SitePath | None = None
    cert_file: SitePath | None = None
    key_file: SitePath | None = None
    # off only for a lab broker with a self-made certificate: the chain and name are not checked
    verify: bool = True

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if self.key_file and not self.cert_file:
            raise ValueError("tls.key_file needs tls.cert_file (the client certificate it belongs to)")
        return self


def template_fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


class MqttSinkConfig(PushSinkConfig):
    """Keys of a `type: mqtt` upstream (edge/mqtt/README.md); batching, filters, privacy, retry
    and the bandwidth cap are the push sinks' own (edge/sync/README.md)."""

    type: str = "mqtt"
    url: str = ""  # derived from host/port/tls: shown in the status, used by the link probe
    host: str
    port: int | None = Field(None, ge=1, le=65535)  # 1883, or 8883 with tls
    tls: TlsConfig | None = None
    username: str | None = None
    password_env: str | None = None
    password_file: SitePath | None = None
    client_id: str | None = None  # default edge-<site id>-<sink id>
    clean_start: bool = False  # false: a persistent session the broker keeps across reconnects
    session_expiry: Duration = 86_400.0  # MQTT 5: how long the broker keeps the session offline
    keepalive: Duration = 60.0
    protocol: Literal["3.1.1", "5"] = "5"
    qos: Literal[1] = 1
    format: Literal["json", "thingsboard", "point"] = "json"
    topic: str = "edge/{site}/records"
    point_topic: str = "edge/{site}/{device}/{point}"
    event_topic: str = "edge/{site}/events/{kind}"
    status_topic: str = "edge/{site}/status"
    max_message_bytes: Size = 256 * 1024
    gzip_level: int = 0
    # downlink: point writes requested on command_topic, answered on response_topic (off: none)
    commands: bool = False
    command_topic: str = "edge/{site}/commands"
    response_topic: str = "edge/{site}/responses"
    command_ttl: Duration = 30.0  # a request issued longer ago is refused (and so is its replay)
    command_rate: int = Field(30, ge=1, le=6000)  # requests a minute, at most

    @field_validator("command_ttl")
    @classmethod
    def _ttl(cls, v: float) -> float:
        if not 1 <= v <= MAX_COMMAND_TTL:
            raise ValueError(f"command_ttl {v:g}s is out of range; expected 1s to 1h")
        return v

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:  # replaces the HTTP sinks' check: the URL is derived here
        return v

    @field_validator("protocol", mode="before")
    @classmethod
    def _protocol(cls, v: Any) -> Any:
        if isinstance(v, int | float) and not isinstance(v, bool):
            v = {5: "5", 3.1: "3.1.1"}.get(v, str(v))
        if v not in ("3.1.1", "5"):
            raise ValueError(f"protocol {v!r} is not supported; expected 3.1.1 or 5")
        return v

    @field_validator("keepalive")
    @classmethod
    def _keepalive(cls, v: float) -> float:
        if not 5 <= v <= 65535:
            raise ValueError(f"keepalive {v:g}s is out of range; expected 5s to 65535s")
        return v

    @field_validator("max_message_bytes")
    @classmethod
    def _message(cls, v: int) -> int:
        if not MIN_MESSAGE <= v <= MAX_MESSAGE:
            raise ValueError(f"max_message_bytes {v} is out of range; expected 1KiB to 256MiB")
        return v

    @field_validator("gzip_level")
    @classmethod
    def _gzip(cls, v: int) -> int:
        if v != 0:
            raise ValueError(
                "gzip_level is not supported by the mqtt sink (payloads go as plain JSON); remove it"
            )
        return v

    @model_validator(mode="after")
    def _derive(self) -> MqttSinkConfig:
        for key, allowed in TOPIC_FIELDS.items():
            template = getattr(self, key)
            try:
                used = template_fields(template)
            except ValueError as exc:
                raise ValueError(f"{key} {template!r} is not a valid template: {exc}") from None
            if unknown := used - allowed:
                raise ValueError(
                    f"{key} {template!r} uses {', '.join(sorted('{' + u + '}' for u in unknown))}; "
                    f"it may use {', '.join(sorted('{' + a + '}' for a in allowed))}"
                )
            if "+" in template or "#" in template or not template:
                raise ValueError(
                    f"{key} {template!r} is not a topic to publish on (empty, or a + or # wildcard)"
                )
        for key in ("ca_file", "client_cert", "client_key", "token_env", "token_file"):
            if getattr(self, key):
                where = (
                    "username: with password_env: or password_file:"
                    if key.startswith("token")
                    else "tls: {ca_file, cert_file, key_file}"
                )
                raise ValueError(f"{key} is not a key of an mqtt upstream; use {where}")
        if not self.verify_tls:
            raise ValueError("verify_tls is not a key of an mqtt upstream; use tls: {verify: false}")
        if (self.password_env or self.password_file) and not self.username:
            raise ValueError("a password needs username:")
        port = self.port or (8883 if self.tls else 1883)
        self.url = f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{port}"
        return self

    @property
    def broker_port(self) -> int:
        return self.port or (8883 if self.tls else 1883)
