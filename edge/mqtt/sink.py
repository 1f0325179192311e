"""The MQTT push sink: the push sinks' loop (cursor, batching, filters, privacy, backoff, dead
letters, bandwidth cap) with a publish at QoS 1 in place of a POST.

A batch is delivered when the broker has acknowledged (PUBACK) every message it became; only then
does the cursor move past it. A connection lost with messages unacknowledged fails the batch, and
the whole batch is published again on the next connection: duplicates come only from what was in
flight. An MQTT 5 broker that refuses a message says so in its PUBACK (a reason code of 0x80 or
more, e.g. 135 "not authorized" from an ACL): the batch is not delivered, the connection is kept,
and the batch is retried with backoff (a refusal of the content itself, 0x90 topic name invalid or
0x99 payload format invalid, is bisected down to the record and dead-lettered instead). One connection per sink, opened on the first batch, with a will `offline` (retained) on
the status topic and a retained `online` published as soon as it is up; a stop publishes
`offline` itself and disconnects cleanly (no will then).

With `commands: true` the same connection carries requests (see `edge.mqtt.commands`): each runs
in its own task, one at a time per device and in arrival order, at most MAX_REQUESTS at once; a
retained message on a command topic is never run; an answer that cannot be published waits for
the next connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sqlite3
import ssl
import time
import weakref
from collections import OrderedDict, deque
from typing import TYPE_CHECKING, Any, ClassVar

import aiomqtt
import orjson
import paho.mqtt.client as paho
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from edge.mqtt import formats
from edge.mqtt.commands import MAX_REQUEST, Commands, Refused, encode_answer, is_rpc_reply
from edge.mqtt.config import MqttSinkConfig
from edge.mqtt.seen import prune
from edge.store.records import Row
from edge.sync.base import LinkBoard, Outcome, Prepared, PushSink
from edge.sync.sink_config import PushSinkConfig
from edge.validation import resolve_secret

if TYPE_CHECKING:
    from edge.plugins import ComponentContext

log = logging.getLogger("edge.mqtt")

#: QoS 1 messages one connection has unacknowledged at once (paho queues the rest, in order)
MAX_INFLIGHT = 200
#: command requests handled at once (running or waiting for their device); one more is refused busy
MAX_REQUESTS = 64
#: answers kept for the next connection when they cannot be published; the oldest go beyond it
MAX_UNSENT = 1000
#: batches encoded ahead whose messages wait for their turn
ENCODED_AHEAD = 64
#: MQTT 5: the largest packet the sink takes (CONNECT's Maximum Packet Size; the broker drops a
#: larger message to it, unread): a request is at most MAX_REQUEST bytes, and one somewhat over it
#: still arrives, to be refused with a reason; the topic's own length comes on top
MAX_PACKET = 16 * MAX_REQUEST
#: what the sink's own outcome codes mean in `Outcome.status` (the push sinks speak HTTP):
ACKED = 200  # every message of the batch got its PUBACK
TOO_LARGE = 413  # a record alone is over max_message_bytes: dead-lettered
BAD_TOPIC = 400  # a record's topic cannot be published on (a + or # in its event kind): dead-lettered
#: MQTT 5 PUBACK reason codes of a refusal, as the push sinks' outcome codes: the content itself
#: (bisected, the record dead-lettered), quota (retried like a 429); any other refusal, "not
#: authorized" above all, is the site's configuration or the broker's state (403: retried with
#: backoff, never dead-lettered: a wrong ACL must not lose data)
REFUSED_CONTENT = frozenset({0x90, 0x99})  # topic name invalid, payload format invalid
REFUSED_QUOTA = 0x97
REFUSED = 403


def refusal_status(codes: list[int]) -> int:
    """The outcome code of a batch the broker refused some messages of (`codes`: their reasons)."""
    if all(c in REFUSED_CONTENT for c in codes):
        return BAD_TOPIC
    if all(c == REFUSED_QUOTA for c in codes):
        return 429
    return REFUSED


class Unacknowledged(aiomqtt.MqttError):
    """Not every PUBACK arrived (the connection was lost, or `timeout.total` passed); `refused`:
    the messages whose PUBACK did arrive with a refusal."""

    def __init__(self, what: str, refused: list[tuple[formats.Message, int]], sent: int) -> None:
        super().__init__(what)
        self.refused = refused
        self.sent = sent


def tls_context(cfg: MqttSinkConfig) -> ssl.SSLContext | None:
    if cfg.tls is None:
        return None
    ctx = ssl.create_default_context(cafile=cfg.tls.ca_file)
    if cfg.tls.cert_file:
        ctx.load_cert_chain(cfg.tls.cert_file, cfg.tls.key_file)
    if not cfg.tls.verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class MqttSink(PushSink):
    type_name: ClassVar[str] = "mqtt"
    config_model: ClassVar[type[PushSinkConfig]] = MqttSinkConfig

    def __init__(self, cfg: PushSinkConfig, ctx: ComponentContext, links: LinkBoard | None = None) -> None:
        super().__init__(cfg, ctx, links)
        assert isinstance(cfg, MqttSinkConfig)
        self.mcfg = cfg
        self.password = resolve_secret(cfg.password_env, cfg.password_file, f"upstream {cfg.id} password")
        self.client_id = cfg.client_id or f"edge-{self.gateway}-{self.id}"
        self.status_topic = cfg.status_topic.format(site=self.gateway, sink=self.id)
        self.topic = cfg.topic.format(site=self.gateway, sink=self.id)
        self._names_of: tuple[object, dict[str, str]] | None = None
        self.client: aiomqtt.Client | None = None
        self._down = asyncio.Event()  # the current connection was lost
        self._connecting = asyncio.Lock()
        self._encoded: OrderedDict[tuple[int, int], list[formats.Message]] = OrderedDict()
        self.announced: set[str] = set()  # ThingsBoard devices connected on this connection
        self.connected = False
        self.session_present: bool | None = None
        self.connects = 0
        self.last_puback: float | None = None
        self.messages_acked = 0
        self.messages_refused = 0  # messages the broker answered with a refusal (MQTT 5)
        # per connection: packet id -> the future its PUBACK's reason code resolves
        self._pubacks: weakref.WeakKeyDictionary[aiomqtt.Client, dict[int, asyncio.Future[int]]] = (
            weakref.WeakKeyDictionary()
        )
        # records of acknowledged batches the format could not carry, by reason
        self.left_out: dict[str, int] = {"failed_read": 0}
        self.commands: Commands | None = None
        self.command_topic = cfg.command_topic.format(site=self.gateway, sink=self.id)
        self.response_topic = cfg.response_topic.format(site=self.gateway, sink=self.id)
        if cfg.commands:
            self.commands = Commands(cfg, ctx, f"mqtt:{self.id}")
        self._command_task: asyncio.Task[None] | None = None
        self._prune_task: asyncio.Task[None] | None = None
        # requests being handled, each in its own task; per device: its lock and how many wait on it
        self._requests: set[asyncio.Task[None]] = set()
        self._device_turns: dict[str, list[Any]] = {}
        self.max_requests = MAX_REQUESTS
        # answers that could not be published, for the next connection (topic, body)
        self._unsent: deque[tuple[str, bytes]] = deque()
        self.answers_resent = 0  # answers published on a later connection
        self.answers_dropped = 0  # answers dropped while more than MAX_UNSENT waited
        # ThingsBoard RPC: requests name a device as this gateway announced it
        self.rpc = cfg.commands and cfg.format == "thingsboard"

    @property
    def names(self) -> dict[str, str]:
        """Device id -> the name ThingsBoard knows it by, as the site says now: a reload (SIGHUP)
        replaces the device list, and a device it added or renamed is announced under its name."""
        devices = self.ctx.site.devices
        if self._names_of is None or self._names_of[0] is not devices:
            self._names_of = (devices, {d.id: d.name or d.id for d in devices})
        return self._names_of[1]

    @property
    def devices_by_name(self) -> dict[str, str]:
        return {name: device for device, name in self.names.items()}

    # ------------------------------------------------------------ encoding
    def messages(self, rows: list[Row], first: int, last: int) -> list[formats.Message]:
        cfg = self.mcfg
        cap = cfg.max_message_bytes
        if cfg.format == "json":
            return formats.json_messages(self.gateway, self.id, self.topic, rows, first, last, cap)
        if cfg.format == "thingsboard":
            return formats.thingsboard_messages(self.names, rows, cap)
        return formats.point_messages(self.gateway, self.id, cfg.point_topic, cfg.event_topic, rows, cap)

    def encode(self, rows: list[Row], first: int, last: int) -> bytes:
        # runs in the batch builder's worker thread: the messages wait for `_attempt`, the bytes
        # returned only feed the sink's size estimate
        try:
            msgs = self.messages(rows, first, last)
        except formats.Unsendable:
            return b""  # `_attempt` meets it again and dead-letters the record
        self._encoded[(first, last)] = msgs
        while len(self._encoded) > ENCODED_AHEAD:
            self._encoded.popitem(last=False)
        return b"".join(m.payload for m in msgs)

    def _prefix(self, rows: list[Row]) -> list[formats.Message]:
        """ThingsBoard: connect (and describe) each device once per connection before its data."""
        if self.mcfg.format != "thingsboard":
            return []
        out: list[formats.Message] = []
        for device in formats.devices_in(rows):
            name = self.names.get(device, device)
            if name in self.announced:
                continue
            out.append(formats.thingsboard_connect(name))
            out.append(formats.thingsboard_attributes(name, {"gateway": self.gateway, "device_id": device}))
        return out

    # ------------------------------------------------------------ delivery
    async def _attempt(self, part: Prepared) -> Outcome:
        msgs = self._encoded.pop((part.first, part.last), None)
        if msgs is None:
            try:
                msgs = await asyncio.to_thread(self.messages, part.rows, part.first, part.last)
            except formats.Unsendable as exc:
                # bisected down to the record, which is dead-lettered; the rest goes on
                status = TOO_LARGE if isinstance(exc, formats.TooLarge) else BAD_TOPIC
                return Outcome(status, str(exc), body=str(exc))
        size = sum(len(m.payload) for m in msgs)
        await self._throttle(size)
        start = time.monotonic()
        try:
            client = await self._connection()
        except MqttConnectError as exc:  # the broker answered: credentials, client id...
            return Outcome(None, f"broker {self.host}:{self.port} refused the connection: {exc}")
        except aiomqtt.MqttError as exc:
            text = str(exc)
            if "SSL" in text or "certificate" in text:
                return Outcome(None, f"TLS to {self.host}:{self.port} failed: {text}")
            return Outcome(None, f"cannot connect to {self.host}:{self.port}: {text}", connect_failed=True)
        prefix = self._prefix(part.rows)
        sent = [*prefix, *msgs]
        try:
            reasons = await self._publish_all(client, sent)
        except (aiomqtt.MqttError, TimeoutError) as exc:
            await self._close(client)
            if isinstance(exc, Unacknowledged) and exc.refused:
                return self._refused(exc.refused, exc.sent)
            what = str(exc) or "timed out"
            return Outcome(None, f"published {len(msgs)} message(s), not all acknowledged: {what}")
        refused = [(m, code) for m, code in zip(sent, reasons, strict=True) if code >= 0x80]
        if refused:  # the broker answered: the batch is not delivered
            return self._refused(refused, len(sent))
        self.announced.update(
            orjson.loads(m.payload)["device"] for m in prefix if m.topic == formats.TB_CONNECT
        )
        self.sent_bytes += size
        self.messages_acked += len(msgs)
        if isinstance(msgs, formats.TbMessages) and msgs.failed_reads:
            self.left_out["failed_read"] += msgs.failed_reads
        self.last_puback = time.time()
        return Outcome(ACKED, elapsed=time.monotonic() - start)

    def _refused(self, refused: list[tuple[formats.Message, int]], sent: int) -> Outcome:
        """The outcome of a batch the broker refused messages of: a server's answer, retried with
        backoff (or bisected, for a refusal of the content), never a link failure."""
        self.messages_refused += len(refused)
        m, code = refused[0]
        why = ReasonCode(PacketTypes.PUBACK, identifier=code)
        text = (
            f"broker {self.host}:{self.port} refused {len(refused)} of {sent} message(s): "
            f"{why} (PUBACK reason {code}) on topic {m.topic}"
        )
        if code == 0x87:
            text += "; check the broker's ACL for this user and topic (retried until it allows them)"
        return Outcome(refusal_status([c for _, c in refused]), text, body=text)

    def _publish(self, client: aiomqtt.Client, msg: formats.Message) -> asyncio.Future[int]:
        """Publish at QoS 1; the future resolves with the PUBACK's reason code (0 from an MQTT
        3.1.1 broker, which has no way to refuse one)."""
        pending = self._pubacks.setdefault(client, {})
        info = client._client.publish(msg.topic, msg.payload, 1, msg.retain)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise aiomqtt.MqttCodeError(info.rc, "Could not publish message")
        # the PUBACK is read on this loop, so it cannot have arrived yet
        ack: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        pending[info.mid] = ack
        return ack

    async def _publish_all(self, client: aiomqtt.Client, msgs: list[formats.Message]) -> list[int]:
        """Publish in order and return once every PUBACK is in, with their reason codes; raises
        when the connection is lost (or `timeout.total` passes) first."""
        each = [self._publish(client, m) for m in msgs]
        acks: asyncio.Future[list[int]] = asyncio.gather(*each)
        lost: asyncio.Future[Any] = asyncio.ensure_future(self._down.wait())
        done: set[asyncio.Future[Any]] = set()
        try:
            async with asyncio.timeout(self.cfg.timeout.total):
                done, _ = await asyncio.wait({acks, lost}, return_when=asyncio.FIRST_COMPLETED)
        except TimeoutError:
            pass
        finally:
            lost.cancel()
            if not acks.done():
                acks.cancel()
                with contextlib.suppress(BaseException):
                    await acks
        if acks in done:
            return acks.result()
        # a broker may close the connection right after a refusal (mosquitto 2.0.11 does): the
        # refusal is the news, not the lost link
        refused = [
            (m, ack.result())
            for m, ack in zip(msgs, each, strict=True)
            if ack.done() and not ack.cancelled() and ack.result() >= 0x80
        ]
        what = (
            "connection lost before every PUBACK arrived"
            if done
            else f"no PUBACK within {self.cfg.timeout.total:g}s"
        )
        raise Unacknowledged(what, refused, len(msgs))

    # ------------------------------------------------------------ connection
    async def _connection(self) -> aiomqtt.Client:
        async with self._connecting:
            if self.client is not None and not self._down.is_set():
                return self.client
            if self.client is not None:
                await self._close(self.client)
            client = self._new_client()
            self._down.clear()
            # bounded by the client's own timeout (CONNACK) and the socket's: an outer cancel would
            # leave the connect running in its thread, to take the session over later
            try:
                await client.__aenter__()
            except BaseException:
                with contextlib.suppress(Exception):
                    client._client.disconnect()
                raise
            self.client = client
            self.connects += 1
            self.announced = set()
            # the birth message: retained, so a subscriber arriving later still sees the state
            birth = await self._publish_all(
                client, [formats.Message(self.status_topic, b"online", retain=True)]
            )
            if birth[0] >= 0x80:
                log.warning(
                    "sink %s: broker refused the status message on %s: %s",
                    self.id,
                    self.status_topic,
                    ReasonCode(PacketTypes.PUBACK, identifier=birth[0]),
                )
            if self.commands is not None:
                # a retained request would run again on every connection: under MQTT 5 the broker
                # is asked not to send retained messages at all (retain handling 2); under 3.1.1
                # they arrive flagged and are skipped
                for topic in (self.command_topic, *([formats.TB_RPC] if self.rpc else [])):
                    if self.mcfg.protocol == "5":
                        await client.subscribe(topic, options=SubscribeOptions(qos=1, retainHandling=2))
                    else:
                        await client.subscribe(topic, qos=1)
            # connected once requests can arrive: a request sent on seeing it is not missed
            self.connected = not self._down.is_set()
            self._status_dirty.set()
            log.info(
                "sink %s: connected to %s:%s as %s (session present: %s)",
                self.id,
                self.host,
                self.port,
                self.client_id,
                self.session_present,
            )
            return client

    def _new_client(self) -> aiomqtt.Client:
        cfg = self.mcfg
        v5 = cfg.protocol == "5"
        properties = None
        if v5:
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = 0 if cfg.clean_start else int(cfg.session_expiry)
            # a command or RPC request is small: a huge one is dropped by the broker, not read whole
            topics = (self.command_topic, formats.TB_RPC) if cfg.commands else ()
            properties.MaximumPacketSize = MAX_PACKET + max((len(t.encode()) for t in topics), default=0)
        client = aiomqtt.Client(
            self.host,
            self.port,
            username=cfg.username,
            password=self.password,
            identifier=self.client_id,
            protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
            will=aiomqtt.Will(self.status_topic, b"offline", qos=1, retain=True),
            clean_session=None if v5 else cfg.clean_start,
            clean_start=cfg.clean_start if v5 else paho.MQTT_CLEAN_START_FIRST_ONLY,
            properties=properties,
            keepalive=int(cfg.keepalive),
            timeout=self.cfg.timeout.connect,
            max_inflight_messages=MAX_INFLIGHT,
            tls_context=tls_context(cfg),
        )
        # the session-present flag and a lost connection, from the client's own callbacks
        paho_client = client._client
        paho_client.connect_timeout = self.cfg.timeout.connect  # the TCP connect, in its thread
        on_connect: Any = paho_client.on_connect
        on_disconnect: Any = paho_client.on_disconnect
        on_publish: Any = paho_client.on_publish
        pending = self._pubacks.setdefault(client, {})

        def published(c: Any, userdata: Any, mid: int, reason: Any, props: Any = None) -> None:
            ack = pending.pop(mid, None)
            if ack is not None and not ack.done():
                ack.set_result(int(getattr(reason, "value", 0) or 0))
            on_publish(c, userdata, mid, reason, props)

        def connected(c: Any, userdata: Any, flags: Any, reason: Any, props: Any = None) -> None:
            self.session_present = bool(getattr(flags, "session_present", False))
            on_connect(c, userdata, flags, reason, props)

        def disconnected(c: Any, userdata: Any, flags: Any, reason: Any, props: Any = None) -> None:
            if self.client is client or self.client is None:
                self._down.set()
                self.connected = False
                self._status_dirty.set()
            on_disconnect(c, userdata, flags, reason, props)
            # the loss is handled through `_down`; a client dropped without its context exit
            # would otherwise leave the future's exception unretrieved (logged at collection)
            lost = client._disconnected
            if lost.done() and not lost.cancelled():
                lost.exception()

        paho_client.on_connect = connected
        paho_client.on_disconnect = disconnected
        paho_client.on_publish = published
        return client

    async def _close(self, client: aiomqtt.Client, *, goodbye: bool = False) -> None:
        if self.client is client:
            self.client = None
            self.connected = False
        if goodbye and not self._down.is_set():
            # a clean stop says so itself: the broker sends the will only on a lost connection
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    await client.publish(self.status_topic, b"offline", qos=1, retain=True)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2.0):
                await client.__aexit__(None, None, None)

    async def start(self) -> None:
        await super().start()
        if self.commands is not None:
            self._command_task = asyncio.create_task(self._command_loop(), name=f"sink:{self.id}:commands")
            self._prune_task = asyncio.create_task(self.commands.prune_kept(), name=f"sink:{self.id}:prune")
        elif self.ctx.state is not None:
            # the requests kept while commands were on: none will be answered again
            try:
                await asyncio.to_thread(prune, self.ctx.state, f"mqtt:{self.id}", 0.0, time.time())
            except sqlite3.Error as exc:  # a full disk, say: the next start deletes them
                log.warning(
                    "sink %s: the requests kept from its commands could not be deleted: %s", self.id, exc
                )

    async def _command_loop(self) -> None:
        """Keep the connection up (also when there is nothing to publish) and answer requests."""
        assert self.commands is not None
        failures = 0
        while True:
            try:
                client = await self._connection()
                failures = 0
                await self._publish_unsent(client)
                async for msg in client.messages:
                    payload = msg.payload if isinstance(msg.payload, bytes) else str(msg.payload).encode()
                    if msg.topic.matches(self.command_topic):
                        rpc = False
                    elif self.rpc and msg.topic.matches(formats.TB_RPC):
                        if is_rpc_reply(payload):
                            continue  # a reply (ours) comes back on the topic it shares with requests
                        rpc = True
                    else:
                        continue
                    if msg.retain:
                        self._skip_retained(str(msg.topic))
                        continue
                    await self._take_request(payload, rpc, time.time())
            except (aiomqtt.MqttError, TimeoutError, OSError) as exc:
                log.debug("sink %s: command subscription: %s", self.id, exc)
            except Exception:  # a bug must not end command handling for good: logged, retried
                log.exception("sink %s: command handling failed; reconnecting", self.id)
            failures += 1
            retry = self.cfg.retry
            await asyncio.sleep(random.uniform(0, min(retry.max, retry.initial * 2 ** min(failures, 20))))

    def _skip_retained(self, topic: str) -> None:
        """A retained message on a command topic is no request: it was sent once and would run
        again on every connection. Skipped unanswered, counted, logged the first time."""
        assert self.commands is not None
        self.commands.retained += 1
        if self.commands.retained == 1:
            log.warning(
                "sink %s: skipped a retained message on %s: requests must be published without "
                "the retain flag (clear it with an empty retained message); later ones are counted "
                "in commands_retained",
                self.id,
                topic,
            )

    async def _take_request(self, payload: bytes, rpc: bool, arrived: float) -> None:
        """Start one request in its own task: requests to one device run one at a time in the
        order they arrived, requests to different devices side by side, so a slow device delays
        only its own. At most `max_requests` at once: one more is refused "busy" (counted) here,
        which also slows down a flood."""
        assert self.commands is not None
        if len(self._requests) >= self.max_requests:
            busy = Refused(f"busy: {len(self._requests)} requests in progress; at most {self.max_requests}")
            await self._serve(payload, rpc, arrived, None, busy)
            return
        device = self.commands.device_of(payload, rpc, self.devices_by_name)
        # one naming no device (refused as malformed) is answered after the requests before it:
        # answers come in the order the requests arrived unless a device is slower
        earlier = set(self._requests) if device is None else set()
        task = asyncio.create_task(
            self._serve(payload, rpc, arrived, device, None, earlier), name=f"sink:{self.id}:request"
        )
        self._requests.add(task)
        task.add_done_callback(self._requests.discard)

    async def _serve(
        self,
        payload: bytes,
        rpc: bool,
        arrived: float,
        device: str | None,
        busy: Refused | None,
        earlier: set[asyncio.Task[None]] | None = None,
    ) -> None:
        if earlier:
            await asyncio.wait(earlier)
        if device is None:
            answer = await self._reply(payload, rpc, arrived, busy)
        else:
            # taken before the first await: requests to one device queue on its lock in arrival order
            turn = self._device_turns.get(device)
            if turn is None:
                turn = self._device_turns[device] = [asyncio.Lock(), 0]
            turn[1] += 1
            try:
                async with turn[0]:
                    answer = await self._reply(payload, rpc, arrived, busy)
            finally:
                turn[1] -= 1
                if turn[1] == 0:
                    del self._device_turns[device]
        await self._publish_answer(formats.TB_RPC if rpc else self.response_topic, encode_answer(answer))

    async def _publish_answer(self, topic: str, body: bytes) -> None:
        """Publish an answer on the current connection; one that cannot be (the connection is
        down, no PUBACK) waits for the next connection, at most MAX_UNSENT of them."""
        client = self.client
        try:
            if client is None or self._down.is_set():
                raise aiomqtt.MqttError("not connected")
            await client.publish(topic, body, qos=1, timeout=self.cfg.timeout.total)
        except (aiomqtt.MqttError, TimeoutError, OSError) as exc:
            log.info("sink %s: an answer on %s waits for the next connection: %s", self.id, topic, exc)
            self._keep_unsent(topic, body)
        except Exception:  # not the link: publishing it again would fail again
            self.answers_dropped += 1
            log.exception("sink %s: an answer on %s cannot be published; dropped", self.id, topic)

    def _keep_unsent(self, topic: str, body: bytes) -> None:
        if len(self._unsent) >= MAX_UNSENT:
            self._unsent.popleft()
            self.answers_dropped += 1
            log.warning(
                "sink %s: more than %d answers wait for a connection: the oldest is dropped "
                "(%d so far; a request sent again with its id gets its answer)",
                self.id,
                MAX_UNSENT,
                self.answers_dropped,
            )
        self._unsent.append((topic, body))

    async def _publish_unsent(self, client: aiomqtt.Client) -> None:
        """Publish the answers kept while the connection was down, oldest first; raises (to
        reconnect) when the connection is lost again, keeping those not yet acknowledged."""
        while self._unsent:
            topic, body = self._unsent[0]
            try:
                await client.publish(topic, body, qos=1, timeout=self.cfg.timeout.total)
            except (aiomqtt.MqttError, TimeoutError, OSError):
                raise
            except Exception:  # not the link: it would block every answer after it
                self.answers_dropped += 1
                log.exception("sink %s: an answer on %s cannot be published; dropped", self.id, topic)
            else:
                self.answers_resent += 1
            if self._unsent and self._unsent[0] == (topic, body):
                self._unsent.popleft()

    async def _reply(
        self, payload: bytes, rpc: bool, arrived: float, busy: Refused | None = None
    ) -> dict[str, Any]:
        """The answer to one request; an error of the gateway's own answers it failed (logged,
        counted) and the next request is handled as usual."""
        assert self.commands is not None
        try:
            if rpc:
                return await self.commands.handle_rpc(payload, self.devices_by_name, busy)
            return await self.commands.handle(payload, arrived, busy)
        except Exception as exc:
            answer = self.commands.failed(None, None, exc)
            if rpc:
                data = {k: answer[k] for k in ("status", "reason", "point", "value")}
                return {"device": None, "id": None, "data": {"success": False, **data}}
            return answer

    async def stop(self) -> None:
        """Never raises: the push loop's stop (which makes the cursor durable) and the clean
        disconnect run whatever the command task ended with."""
        if self._command_task is not None:
            self._command_task.cancel()
            try:
                await self._command_task
            except asyncio.CancelledError:
                pass
            except Exception:
                log.exception("sink %s: command handling had failed", self.id)
            self._command_task = None
        if self._prune_task is not None:
            self._prune_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._prune_task
            self._prune_task = None
        requests = list(self._requests)
        for task in requests:
            task.cancel()
        for result in await asyncio.gather(*requests, return_exceptions=True):
            if isinstance(result, Exception):
                log.error("sink %s: a request had failed: %r", self.id, result)
        await super().stop()
        if self.client is not None:
            await self._close(self.client, goodbye=True)

    # ------------------------------------------------------------ status
    def snapshot(self) -> dict[str, Any]:
        """The persisted status (what `edge sync status` reads from the files) with the link's
        state: connected, session present, last PUBACK."""
        out = super().snapshot()
        out.update(
            {
                "connected": self.connected,
                "session_present": self.session_present,
                "last_puback": self.last_puback,
            }
        )
        return out

    def status(self) -> dict[str, Any]:
        out = super().status()
        out.update(
            {
                "broker": f"{self.host}:{self.port}",
                "client_id": self.client_id,
                "protocol": self.mcfg.protocol,
                "format": self.mcfg.format,
                "connected": self.connected,
                "session_present": self.session_present,
                "connects": self.connects,
                "last_puback": self.last_puback,
                "messages_acked": self.messages_acked,
                "messages_refused": self.messages_refused,
                "left_out": dict(self.left_out),
            }
        )
        if self.commands is not None:
            out.update(self.commands.status())
            out.update(
                {
                    "answers_unsent": len(self._unsent),
                    "answers_resent": self.answers_resent,
                    "answers_dropped": self.answers_dropped,
                }
            )
        return out
