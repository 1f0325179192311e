"""The mqtt sink against a real mosquitto: delivery once each in order at QoS 1, the PUBACK-gated
cursor, a broker restart mid-stream, TLS with client certificates, a password file, the retained
birth message and the clean goodbye."""

from __future__ import annotations

import time
from pathlib import Path

from edge.model import Reading
from tests.mqtt.broker import Subscriber, all_arrived, mqtt_sink, sink_of
from tests.support.site import running_site
from tests.support.waiting import until

TOPIC = "edge/test-site/records"


def readings(n: int, start: int = 0) -> list[Reading]:
    t = time.time()
    return [Reading(t + (start + i) * 1e-3, "dev.p", float(start + i)) for i in range(n)]


async def test_records_arrive_once_each_in_order(tmp_path: Path, broker) -> None:  # type: ignore[no-untyped-def]
    b = broker()
    async with Subscriber(b.port) as sub:
        async with running_site(tmp_path, {"upstream": [mqtt_sink(b.port)]}, web=False) as rt:
            for k in range(5):
                rt.hub.ingest(readings(100, k * 100))
            committed = await rt.journal.flush()
            s = sink_of(rt)
            await until(lambda: s.cursor >= committed, 20, what="the cursor to pass every record")
            await until(all_arrived(sub, TOPIC, committed), 10, what="every record at the subscriber")
            assert sub.seqs(TOPIC) == list(range(1, committed + 1))
            st = s.status()
            assert st["connected"] is True and st["last_puback"] is not None and st["type"] == "mqtt"
            assert sub.on("edge/test-site/status")[-1] == b"online"
        # a clean stop publishes `offline` itself (retained)
        await until(lambda: sub.on("edge/test-site/status")[-1:] == [b"offline"], 10, what="offline on stop")
