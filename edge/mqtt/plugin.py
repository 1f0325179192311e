"""The MQTT manifest: the `mqtt` push sink, run by the sync component like `http` and `influxdb`.

Its client library (aiomqtt, on paho-mqtt) is the `mqtt` extra; a site naming `type: mqtt`
without it is told which extra to install.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edge.plugins import Plugin, Spec

if TYPE_CHECKING:
    from pydantic import BaseModel


def config() -> type[BaseModel]:
    from edge.mqtt.config import MqttSinkConfig

    return MqttSinkConfig


def sink() -> Any:
    from edge.mqtt.sink import MqttSink

    return MqttSink


PLUGIN = Plugin(
    name="mqtt",
    extra="mqtt",
    requires=("aiomqtt", "paho"),
    sinks={"mqtt": Spec(config, sink)},
)
