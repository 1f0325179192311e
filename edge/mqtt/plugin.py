"""The MQTT manifest: the `mqtt` push sink, run by the sync component like `http` and `influxdb`.

Its client library (aiomqtt, on paho-mqtt) is the `mqtt` extra; a site naming `type: mqtt`
without it is told which extra to install.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edge.plugins import Plugin, Spec, lazy_value

if TYPE_CHECKING:
    from pydantic import BaseModel

    from edge.config import Site


def config() -> type[BaseModel]:
    from edge.mqtt.config import MqttSinkConfig

    return MqttSinkConfig


def sink() -> Any:
    from edge.mqtt.sink import MqttSink

    return MqttSink


def check(site: Site) -> list[str]:
    """What `edge check` (and a reload) refuses beyond each entry's own keys: two enabled mqtt
    sinks on one broker that would take each other's commands (every command run twice);
    with a thingsboard sink, two devices ThingsBoard would know by the same name."""
    from edge.mqtt.config import MqttSinkConfig

    out: list[str] = []
    # (broker, topic) -> the first sink that uses it: (index in upstream:, id)
    commands: dict[tuple[str, str], tuple[int, str]] = {}
    for i, cfg in enumerate(site.upstream):
        if not isinstance(cfg, MqttSinkConfig) or not cfg.enabled:
            continue
        broker = f"{cfg.host.lower()}:{cfg.broker_port}"
        if not cfg.commands:
            continue
        topic = cfg.command_topic.format(site=site.site.id, sink=cfg.id)
        if (first := commands.setdefault((broker, topic), (i, cfg.id))) != (i, cfg.id):
            out.append(
                f"upstream[{i}]: sinks {first[1]} and {cfg.id} both take commands from {topic!r} at "
                f"broker {broker}: every command would run twice; give each its own command_topic "
                "(e.g. edge/{site}/{sink}/commands), or commands: true on one of them only"
            )
    tb = [
        cfg.id
        for cfg in site.upstream
        if isinstance(cfg, MqttSinkConfig) and cfg.enabled and cfg.format == "thingsboard"
    ]
    if tb:
        # ThingsBoard knows a device by the name the gateway gives it (`name:`, else the id): two
        # alike would be one device there, their telemetry mixed and an RPC to it writing either
        named: dict[str, str] = {}
        for j, device in enumerate(site.devices):
            name = device.name or device.id
            if (owner := named.setdefault(name, device.id)) != device.id:
                out.append(
                    f"devices[{j}]: devices {owner} and {device.id} are both {name!r} to ThingsBoard "
                    f"(sink {', '.join(tb)}, format: thingsboard): they would be one ThingsBoard device; "
                    "give each a name of its own"
                )
    return out


PLUGIN = Plugin(
    name="mqtt",
    extra="mqtt",
    requires=("aiomqtt", "paho"),
    sinks={"mqtt": Spec(config, sink)},
    check=check,
    state_schemas={"mqtt": lazy_value("edge.mqtt.seen:SEEN_SCHEMA")},
)
