"""The BLE driver: BTHome v2 sensors heard through the shared scanner, GATT health instruments.

`mode: bthome` (default): every advertisement of the device's address with BTHome service data
is decoded; a packet id seen twice in a row is the same packet again (BlueZ re-reports service
data with every RSSI change) and is dropped; objects become readings of the mapped points (or, with
no `points:`, of a point named after each object, added as they appear). Garbage, unknown
objects and encrypted packets are counted, never raised: the device is degraded with the reason.
An encrypted packet whose counter does not grow is a replay, refused and counted the same way; a
restarted counter is believed only after RESET_AFTER packets with distinct, growing counters.

`mode: gatt`: when the instrument advertises (a cuff or a scale wakes up for a measurement), the
driver connects, subscribes to the measurement characteristics of its `services:` and turns each
indication into an event (`blood_pressure`, `weight`, `body_temperature`, `glucose`, `spo2`)
marked with the device's privacy class (and its `resident:`, if given), plus the `measurements`
counter point. A glucose meter is then asked for the records stored since the last one this
gateway received (Record Access Control Point); each measurement is paired with its context and
the last record number is kept in the data dir (`drivers/ble/glucose.py`). A failed or hanging connection
times out after `connect_timeout` and backs off (capped, jittered); each device has its own task,
so one stuck instrument never holds up another.

`mode: ibeacon | eddystone | advert`: each advertisement is read by the device's `AdvertWatch`
(drivers/ble/adverts.py; a vendor layout from its profile, drivers/ble/mfr.py) into `present`,
`rssi` and the format's points. A beacon given by `beacon:` ids instead of an address is offered
every advertisement no address claims and keeps those carrying its ids. A layout's `packet_id`
seen twice in a row is dropped as in BTHome mode; what cannot be read is counted (`garbage`,
`encrypted`, `unsupported`) and degrades the device, never raised.

Every mode: no advertisement for `stale_after` takes the device offline with the reason (BTHome
and beacon points go stale, last value kept; a beacon's `present` becomes false, a good reading:
absence is a fact); the next advertisement brings it back. The packet read last, heard again
then, is still not read twice, but the points it carries are good again with their values (the
sensor states them now); the RSSI and the points it does not carry stay stale until a new packet.
An encrypted BTHome sensor's last packet is the exception: anyone who recorded it can send it, so
only a packet with a newer counter brings that sensor back.

Advertising modes: at most `max_adverts_per_second` advertisements of the device are read in each
second (a counter per second, O(1) per advertisement); the rest are dropped unread and counted
(`over_rate`), and the device is degraded with the reason while that lasts (its reason updated
once a second, one `device_state` event per burst). A second without excess ends the burst: the
next good packet makes the device online again.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from drivers.ble import bthome, glucose, plx
from drivers.ble.adverts import MODES, PRESENCE, Heard
from drivers.ble.config import (
    GLUCOSE_CONTEXT,
    PLX_CONTINUOUS,
    PLX_FEATURES,
    RACP,
    SERVICES,
    BleDevice,
    BlePoint,
    base_object,
    object_type,
)
from drivers.ble.measurements import DECODERS, BadMeasurement
from drivers.ble.scanner import SharedScanner, scanner_for
from edge.driver import BaseDriver, DriverContext
from edge.model import (
    CommandResult,
    CommandStatus,
    Event,
    HealthState,
    PointInfo,
    Quality,
    Reading,
    Record,
    Severity,
    Value,
    point_id,
)
from edge.validation import resolve_secret

COUNTERS = (
    "advertisements",  # heard from this address
    "packets",  # BTHome packets decoded; beacon and vendor-layout advertisements read
    "duplicates",  # same BTHome packet id again, or a glucose record already received: dropped
    "garbage",  # service data that is not a BTHome v2 packet, or not the beacon/layout format claimed
    "unknown_objects",  # packets cut short at an object id the decoder does not know
    "encrypted",  # encrypted packets that could not be decrypted (no bind key, or a wrong one; Eddystone eTLM)
    "unsupported",  # beacon frames of a kind no decoder reads (Eddystone EID)
    "replayed",  # encrypted packets whose counter did not move forward: dropped
    "counter_restarts",  # encrypted sensors believed to have restarted their counter (a new battery)
    "over_rate",  # advertisements beyond max_adverts_per_second in a second: dropped unread
    "measurements",  # GATT measurements turned into events
    "bad_measurements",  # GATT indications without a usable value (NaN, 0xFFFF, too short)
    "connects",
    "connect_failures",
    "records",  # glucose records received (stored or new; also counted as measurements when they hold one)
    "racp_failures",  # record requests the meter answered with an error, an abort, or not at all
    "state_errors",  # the last glucose record number could not be written to the data dir
)


RESET_AFTER = 3
PRESENCE_KEYS = frozenset(p.name for p in PRESENCE)


def _bind_key(device: BleDevice) -> bytes | None:
    """The device's 16-byte BTHome bind key from its secret reference (None: not encrypted)."""
    text = resolve_secret(device.bind_key_env, device.bind_key_file, f"device {device.id} bind_key")
    if text is None:
        return None
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        key = b""
    if len(key) != 16:
        raise ValueError(
            f"device {device.id}: bind_key must be 32 hex digits (16 bytes), as the sensor shows it"
        )
    return key


class BleDriver(BaseDriver):
    config_model = BleDevice

    def __init__(self, device: BleDevice, ctx: DriverContext) -> None:
        super().__init__(device, ctx)
        self.device: BleDevice = device
        self.by_key: dict[str, BlePoint] = {p.key: p for p in device.points}
        # iBeacon, Eddystone, vendor layouts: one watch reads the advertisements; point key -> name
        self.watch = device.watch() if device.mode in MODES else None
        self.advert_map: dict[str, str] = (
            {p.key: p.name for p in device.points}
            if device.points
            else {p.name: p.name for p in self.watch.points()}
            if self.watch
            else {}
        )
        self.default_map = device.mode == "bthome" and not device.points
        self.found: dict[str, PointInfo] = {}  # default map: a point per object seen so far
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.last_values: dict[str, Value] = {}
        self.last_packet_id: int | None = None
        self._silent = False  # went offline for silence: the last packet's points are stale
        self.last_counter: int | None = None  # encrypted packets: the newest counter accepted
        self._last_sealed = b""  # ...and that packet as sent: BlueZ reports it again, not a replay
        # a restart candidate: the counter of the last authentic packet below `last_counter` and
        # how many such packets in a row had distinct, growing counters (a sensor reset?)
        self._restart = (0, 0)
        self.key = _bind_key(device)
        self.connected = False
        self._scanner: SharedScanner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._heard = asyncio.Event()
        self._last_heard = time.monotonic()
        self._ble_device: Any = None  # bleak's BLEDevice from the latest advertisement
        # the rate cap: advertisements read in the current second, and the ones dropped in it
        self._second = 0
        self._in_second = 0
        self._dropped_in_second = 0
        self._flooding = False  # a burst over the cap is going on: the device stays degraded
        # glucose: the last record number received, kept per meter in the data dir
        self.sequences = glucose.SequenceStore(Path(ctx.data_dir) / "ble-glucose")
        # (mode gatt always has an address: only beacons matched by their ids go without)
        self.last_sequence = (
            self.sequences.load(device.address)
            if "glucose" in device.services and device.address is not None
            else None
        )
        self._sequence_dirty = False
        self.pairing = glucose.Pairing(self._glucose_record)
        self._racp: asyncio.Future[tuple[int, int]] | None = None
        self.plx_features: dict[str, Any] = {}

    def points(self) -> list[PointInfo]:
        if self.default_map:
            return list(self.found.values())
        return self.device.point_infos()

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self._last_heard = time.monotonic()
        await self.listen()
        self._tasks.append(asyncio.create_task(self._watch_silence(), name=f"ble:{self.id}:silence"))
        if self.device.mode == "gatt":
            self._tasks.append(asyncio.create_task(self._gatt_loop(), name=f"ble:{self.id}:gatt"))

    async def stop(self) -> None:
        for task in self._tasks:
            # cancel until it has really ended: a cancellation landing as a timeout fires can be
            # swallowed by asyncio.timeout in Python 3.11
            while not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=0.5)
            with contextlib.suppress(asyncio.CancelledError, Exception):
                task.result()
        self._tasks.clear()
        await self.unlisten()
        self.set_health(HealthState.STOPPED, "stopped")
        self.end_stream()

    async def listen(self) -> None:
        """Have `on_advertisement` called for this device's advertisements: by the adapter's
        shared scanner (the demo's simulated devices call it themselves instead)."""
        scanner = scanner_for(self.device.adapter)
        if self.device.address is not None:
            await scanner.add(self.device.address, self.on_advertisement)
        else:
            await scanner.add_by_ids(self.id, self.on_advertisement)
        self._scanner = scanner

    async def unlisten(self) -> None:
        if self._scanner is not None:
            if self.device.address is not None:
                await self._scanner.remove(self.device.address)
            else:
                await self._scanner.remove_by_ids(self.id)
            self._scanner = None

    async def _watch_silence(self) -> None:
        """Offline (and BTHome points stale) after `stale_after` without an advertisement."""
        stale_after = self.device.stale_after
        while True:
            wait = self._last_heard + stale_after - time.monotonic()
            if wait > 0 or self.connected:
                await asyncio.sleep(max(wait, 0.05 * stale_after))
                continue
            self._went_silent()
            self._heard.clear()
            await self._heard.wait()

    def _went_silent(self) -> None:
        ts = self.ctx.clock()
        if self.watch is not None:
            absent = self.watch.absent()
            prefix = self.id + "."
            self.emit(
                [
                    Reading(ts, prefix + name, absent[key], Quality.GOOD)
                    if key in absent
                    else Reading(ts, prefix + name, self.last_values.get(prefix + name), Quality.STALE)
                    for key, name in self.advert_map.items()
                ]
            )
        elif self.device.mode == "bthome":
            self.emit(
                [Reading(ts, pid, self.last_values.get(pid), Quality.STALE) for pid in self._point_ids()]
            )
        self._silent = True
        self.set_health(
            HealthState.OFFLINE, f"no advertisement from {self._heard_as()} for {self.device.stale_after:g}s"
        )

    def _heard_as(self) -> str:
        """What the device is listened for by: its address, or its beacon ids."""
        if self.device.address is not None:
            return self.device.address
        ids = self.device.beacon.model_dump(exclude_none=True) if self.device.beacon else {}
        return "the beacon " + ", ".join(f"{k} {v}" for k, v in ids.items())

    def _point_ids(self) -> list[str]:
        return [info.id for info in self.points() if info.name != "measurements"]

    # ------------------------------------------------------------ advertisements
    def on_advertisement(self, device: Any, adv: Any) -> None:
        """One advertisement (bleak's BLEDevice and AdvertisementData, or look-alikes with
        `address`; `manufacturer_data`, `service_data`, `rssi`, `local_name`). Never raises on
        what it contains."""
        heard = None
        if self.watch is not None:
            heard = self.watch.read(
                device.address, adv.manufacturer_data, adv.service_data, adv.rssi, adv.local_name
            )
            if heard is None:  # another beacon's, or a stranger's advertisement
                return
        self.counters["advertisements"] += 1
        self._last_heard = now = time.monotonic()
        self._heard.set()
        if self.device.mode == "gatt":
            self._ble_device = device
            if self.health.state in (HealthState.OFFLINE, HealthState.STARTING):
                self.set_health(HealthState.ONLINE, "advertising")
            return
        second = int(now)
        if second != self._second:
            self._next_second(second)
        self._in_second += 1
        if self._in_second > self.device.max_adverts_per_second:
            self._over_rate()
            return
        if heard is not None:
            self.on_heard(heard)
            return
        data = adv.service_data.get(bthome.SERVICE_UUID)
        if data is not None:
            self.on_service_data(data, adv.rssi)

    def _next_second(self, second: int) -> None:
        """A new second of the rate cap; a burst ends with a second (heard or not) without excess."""
        if self._flooding and not (self._dropped_in_second and second == self._second + 1):
            self._flooding = False
        self._second = second
        self._in_second = 0
        self._dropped_in_second = 0

    def _over_rate(self) -> None:
        """An advertisement beyond the cap: counted, dropped; the reason is updated once a second."""
        self.counters["over_rate"] += 1
        self.health.errors += 1
        self._dropped_in_second += 1
        if self._dropped_in_second == 1:
            self._flooding = True
            self.set_health(
                HealthState.DEGRADED,
                f"more than {self.device.max_adverts_per_second} advertisements a second from "
                f"{self._heard_as()} (max_adverts_per_second): the rest are dropped unread — a "
                f"faulty device, or another one sending with its address "
                f"({self.counters['over_rate']} over rate)",
            )

    def on_heard(self, heard: Heard) -> None:
        """One advertisement of a beacon or vendor sensor: de-duplicate, emit, count what could not be read."""
        prefix = self.id + "."
        if heard.packet_id is not None:
            if heard.packet_id == self.last_packet_id:
                present = self.advert_map.get("present")
                self._same_packet(
                    [
                        prefix + n
                        for k, n in self.advert_map.items()
                        if k in heard.values and k not in PRESENCE_KEYS
                    ],
                    {prefix + present: True} if present is not None else {},
                )
                return
            self.last_packet_id = heard.packet_id
        if heard.problem is None and len(heard.values) > len(PRESENCE_KEYS & heard.values.keys()):
            self.counters["packets"] += 1  # not an advertisement that only says it is there
            self._silent = False
        ts = self.ctx.clock()
        batch: list[Record] = []
        for key, name in self.advert_map.items():
            if key in heard.values:
                value = heard.values[key]
                self.last_values[prefix + name] = value
                batch.append(Reading(ts, prefix + name, value, Quality.GOOD))
        self.health.last_ok = ts
        self.emit(batch)
        if heard.problem is not None:
            self._bad(heard.problem.counter, heard.problem.reason)
        elif self.health.state != HealthState.ONLINE and not self._flooding:
            self.set_health(HealthState.ONLINE)

    def on_service_data(self, data: bytes, rssi: int | None = None) -> None:
        """One BTHome payload of this device: decode, de-duplicate, emit (never raises)."""
        try:
            packet = bthome.decode(data, self.key, self.device.address or "")
        except bthome.EncryptedPacket:
            self._bad("encrypted", "encrypted BTHome packet: give the sensor's bind_key_env or bind_key_file")
            return
        except bthome.NotAuthentic as exc:
            self._bad("encrypted", str(exc))
            return
        except bthome.BTHomeError as exc:
            self._bad("garbage", f"bad BTHome data {bytes(data[:24]).hex(' ')}: {exc}")
            return
        values: dict[str, Any] = packet.values
        if packet.counter is not None:
            if packet.counter == self.last_counter and bytes(data) == self._last_sealed:
                # BlueZ reporting it again: not a replay. But anyone who recorded it can send it
                # too, so it never brings a silent sensor back: only a newer counter does.
                self.counters["duplicates"] += 1
                if self._silent:
                    self._still_silent(packet.counter)
                return
            if not self._counter_moves_on(packet.counter):
                return
            self._last_sealed = bytes(data)
        if packet.packet_id is not None:
            if packet.packet_id == self.last_packet_id:
                self._same_packet(self._restated(values))
                return
            self.last_packet_id = packet.packet_id
        self.counters["packets"] += 1
        self._silent = False
        ts = self.ctx.clock()
        if rssi is not None:
            values["rssi"] = rssi
        batch: list[Record] = []
        prefix = self.id + "."
        if self.default_map:
            for key, value in values.items():
                if key == "rssi":
                    continue
                pid = prefix + key
                if key not in self.found:
                    self._found(key)
                self.last_values[pid] = value
                batch.append(Reading(ts, pid, value, Quality.GOOD))
        else:
            for key, p in self.by_key.items():
                if key in values:
                    pid = prefix + p.name
                    value = values[key]
                    self.last_values[pid] = value
                    batch.append(Reading(ts, pid, value, Quality.GOOD))
        self.health.last_ok = ts
        self.emit(batch)
        if packet.unknown is not None:
            self._bad(
                "unknown_objects",
                f"unknown BTHome object id 0x{packet.unknown:02x}: kept the objects before it, "
                "skipped the rest of the packet",
            )
        elif self.health.state != HealthState.ONLINE and not self._flooding:
            self.set_health(HealthState.ONLINE)

    def _restated(self, values: dict[str, Any]) -> list[str]:
        """The points a BTHome packet's values feed (the RSSI is the advertisement's, not the packet's)."""
        prefix = self.id + "."
        if self.default_map:
            return [prefix + key for key in values if key in self.found]
        return [prefix + p.name for key, p in self.by_key.items() if key in values]

    def _same_packet(self, restated: list[str], facts: dict[str, Value] | None = None) -> None:
        """The packet read last, heard again: dropped and counted. When the device went silent
        since, it is back in range: the sensor still says what that packet said, so the points it
        restates are good again with their last values (a reading each, for the quality's change;
        the repeats that follow add nothing), `facts` (a beacon's `present`) are reported, and the
        device is online. The RSSI of the last packet read and the points this packet does not
        carry stay stale until a new packet."""
        self.counters["duplicates"] += 1
        if not self._silent:
            return
        self._silent = False
        ts = self.ctx.clock()
        batch: list[Record] = [
            Reading(ts, pid, self.last_values[pid], Quality.GOOD)
            for pid in restated
            if pid in self.last_values
        ]
        for pid, value in (facts or {}).items():
            self.last_values[pid] = value
            batch.append(Reading(ts, pid, value, Quality.GOOD))
        self.health.last_ok = ts
        self.emit(batch)
        if self.health.state != HealthState.ONLINE and not self._flooding:
            self.set_health(HealthState.ONLINE)

    def _still_silent(self, counter: int) -> None:
        """A silent encrypted sensor's last packet, heard again: it stays offline, its points
        stale, and the reason says why (the sensor itself comes back with a new counter)."""
        self.set_health(
            HealthState.OFFLINE,
            f"no new packet from {self._heard_as()} for {self.device.stale_after:g}s: only its last "
            f"one (counter {counter}) heard again, which anyone who recorded it can send; "
            f"back with a newer counter ({self.counters['duplicates']} duplicates)",
        )

    def _found(self, key: str) -> None:
        """Default map: a new object becomes a point (announced through the context, so the site knows its metadata)."""
        name = base_object(key)
        info = PointInfo(
            id=point_id(self.id, key),
            device=self.id,
            name=key,
            type=object_type(name),
            unit=bthome.OBJECT_NAMES[name].unit,
        )
        self.found[key] = info
        self.ctx.register_points([info])

    def _counter_moves_on(self, counter: int) -> bool:
        """Replay protection for encrypted packets: the counter must grow; a packet whose counter
        does not is refused, counted and degrades the device. A sensor whose counter restarted
        (new battery) is believed after RESET_AFTER authentic packets in a row with distinct,
        growing counters: one recorded packet sent again and again never passes for a restart."""
        last = self.last_counter
        if last is not None and counter <= last:
            previous, run = self._restart
            run = run + 1 if run and counter > previous else 1
            self._restart = (counter, run)
            if run < RESET_AFTER:
                self._bad(
                    "replayed",
                    f"encrypted BTHome packet refused as a replay: its counter {counter} is not "
                    f"above {last}, the last accepted",
                )
                return False
            self.counters["counter_restarts"] += 1
            self.log.warning(
                "%s: BTHome counter restarted at %d (was %d): believed after %d packets with "
                "growing counters",
                self._heard_as(),
                counter,
                last,
                RESET_AFTER,
            )
        self._restart = (0, 0)
        self.last_counter = counter
        return True

    def _bad(self, counter: str, reason: str) -> None:
        self.counters[counter] += 1
        self.health.errors += 1
        self.set_health(
            HealthState.DEGRADED, f"{reason} ({self.counters[counter]} {counter.replace('_', ' ')})"
        )

    # ------------------------------------------------------------ GATT
    async def _gatt_loop(self) -> None:
        try:
            await self._connect_when_heard()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug here must restart the driver, not leave it deaf
            self.log.exception("BLE GATT loop failed")
            self.fail(exc)

    async def _connect_when_heard(self) -> None:
        d = self.device
        backoff = d.reconnect_min
        while True:
            await self._heard.wait()  # an instrument advertises when it has something to send
            connected = await self._session()
            if connected:
                backoff = d.reconnect_min
            # jittered, so instruments that failed together do not all retry together
            await asyncio.sleep(random.uniform(backoff / 2, backoff))
            if not connected:
                backoff = min(d.reconnect_max, backoff * 2)
            if time.monotonic() - self._last_heard > d.stale_after:
                self._heard.clear()

    async def _session(self) -> bool:
        """Connect, subscribe, fetch a glucose meter's stored records, deliver indications until
        the instrument disconnects. True if it connected."""
        from bleak import BleakClient
        from bleak.exc import BleakError

        d = self.device
        gone = asyncio.Event()
        target = self._ble_device or d.address or ""
        client = BleakClient(
            target,
            disconnected_callback=lambda _client: gone.set(),
            timeout=d.connect_timeout,
            bluez={"adapter": d.adapter} if d.adapter else {},
        )
        subscribed: list[str] = []
        try:
            async with asyncio.timeout(d.connect_timeout):
                await client.connect()
                missing = []
                for name in d.services:
                    if await self._subscribe(client, name):
                        subscribed.append(name)
                    else:
                        missing.append(name)
            if not subscribed:
                raise BleakError(f"none of the services {', '.join(d.services)} on the device")
            self.connected = True
            self.counters["connects"] += 1
            note = f"connected; the device has no {', '.join(missing)} service" if missing else ""
            self.set_health(HealthState.DEGRADED if missing else HealthState.ONLINE, note)
            if "glucose" in subscribed and client.services.get_characteristic(RACP) is not None:
                await self._fetch_records(client, gone)
            await gone.wait()
            return True
        except (BleakError, TimeoutError, OSError, EOFError) as exc:
            self.counters["connect_failures"] += 1
            self.health.errors += 1
            why = str(exc) or type(exc).__name__
            if isinstance(exc, TimeoutError):
                why = f"no connection within {d.connect_timeout:g}s"
            self.set_health(HealthState.DEGRADED, f"GATT connection to {d.address} failed: {why}")
            return bool(subscribed)
        finally:
            self.connected = False
            self._racp = None
            self.pairing.flush()  # a measurement still waiting for its context is kept
            self._save_sequence()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await client.disconnect()

    async def _subscribe(self, client: Any, service: str) -> bool:
        """Start notifications/indications of the service's characteristics; False when the device
        lacks the service's measurement characteristic(s)."""
        chars = client.services
        if service == "glucose":
            measurement = SERVICES[service][1]
            if chars.get_characteristic(measurement) is None:
                return False
            await client.start_notify(measurement, self._handler(self.on_glucose))
            # context and RACP are optional: a meter without RACP only sends new measurements
            if chars.get_characteristic(GLUCOSE_CONTEXT) is not None:
                await client.start_notify(GLUCOSE_CONTEXT, self._handler(self.on_glucose_context))
            if chars.get_characteristic(RACP) is not None:
                await client.start_notify(RACP, self._handler(self.on_racp))
            return True
        if service == "pulse_oximeter":
            found = False
            for char, decoder in ((SERVICES[service][1], plx.spot_check), (PLX_CONTINUOUS, plx.continuous)):
                if chars.get_characteristic(char) is not None:
                    await client.start_notify(
                        char, self._handler(partial(self.on_measurement, service, decoder=decoder))
                    )
                    found = True
            if found and chars.get_characteristic(PLX_FEATURES) is not None:
                try:
                    self.plx_features = plx.features(bytes(await client.read_gatt_char(PLX_FEATURES)))
                except BadMeasurement as exc:
                    self.log.warning("PLX features of %s unreadable: %s", self.device.address, exc)
            return found
        char = SERVICES[service][1]
        if chars.get_characteristic(char) is None:
            return False
        await client.start_notify(char, self._handler(partial(self.on_measurement, service)))
        return True

    def _handler(self, on_value: Callable[[bytes], None]) -> Any:
        def handler(_char: Any, data: bytearray) -> None:
            on_value(bytes(data))

        return handler

    def on_measurement(
        self, service: str, data: bytes, decoder: Callable[[bytes], dict[str, Any]] | None = None
    ) -> None:
        """One indication of a measurement characteristic: an event, or a counted bad measurement."""
        try:
            payload = (decoder or DECODERS[service])(data)
        except BadMeasurement as exc:
            self._bad("bad_measurements", f"{service}: {exc}")
            return
        self._emit_measurement(SERVICES[service][2], payload)

    def _emit_measurement(self, kind: str, payload: dict[str, Any]) -> None:
        ts = self.ctx.clock()
        if self.device.resident is not None:
            payload["resident"] = self.device.resident
        payload["privacy"] = str(self.device.privacy)
        self.counters["measurements"] += 1
        self.health.last_ok = ts
        self.emit(
            [
                Event(kind, self.id, Severity.INFO, payload, ts),
                Reading(ts, f"{self.id}.measurements", self.counters["measurements"], Quality.GOOD),
            ]
        )
        if self.health.state == HealthState.DEGRADED and self.connected:
            self.set_health(HealthState.ONLINE, "")

    # ------------------------------------------------------------ glucose records
    def on_glucose(self, data: bytes) -> None:
        """A Glucose Measurement (a stored record or a new one): held until its context arrives."""
        try:
            m = glucose.measurement(data)
        except BadMeasurement as exc:
            self._bad("bad_measurements", f"glucose: {exc}")
            return
        self.pairing.on_measurement(m)

    def on_glucose_context(self, data: bytes) -> None:
        try:
            sequence, fields = glucose.context(data)
        except BadMeasurement as exc:
            self._bad("bad_measurements", f"glucose context: {exc}")
            return
        self.pairing.on_context(sequence, fields)

    def _glucose_record(self, m: glucose.Measurement, context: dict[str, Any] | None) -> None:
        """A measurement with its context (or without, when none came): an event, once per record."""
        last = self.last_sequence
        if last is not None and m.sequence <= last:
            self.counters["duplicates"] += 1  # the meter sent a record this gateway already has
            return
        self.last_sequence = m.sequence  # received: a record without a value is not asked for again
        self._sequence_dirty = True
        self.counters["records"] += 1
        try:
            payload = glucose.glucose_record(m, context)
        except BadMeasurement as exc:
            self._bad("bad_measurements", f"glucose: {exc}")
        else:
            self._emit_measurement(SERVICES["glucose"][2], payload)
        if self._racp is None:  # a new measurement outside a transfer: keep its number now
            self._save_sequence()

    def on_racp(self, data: bytes) -> None:
        response = glucose.racp_response(data)
        if response is None:
            self.log.debug("RACP indication ignored: %s", data.hex(" "))
            return
        if self._racp is not None and not self._racp.done():
            self._racp.set_result(response)

    @property
    def transferring(self) -> bool:
        """A glucose meter's stored records are being fetched (its RACP response is awaited)."""
        return self._racp is not None

    async def _fetch_records(self, client: Any, gone: asyncio.Event) -> None:
        """Ask for the stored records after the last one received and wait for the meter's RACP
        response; the records arrive meanwhile as measurement and context notifications. A meter
        that disconnects meanwhile ends the wait: the next connection goes on from the last record
        received."""
        d = self.device
        self._racp = response = asyncio.get_running_loop().create_future()
        disconnected = asyncio.ensure_future(gone.wait())
        try:
            await client.write_gatt_char(RACP, glucose.report_request(self.last_sequence), response=True)
            async with asyncio.timeout(d.records_timeout):
                await asyncio.wait({response, disconnected}, return_when=asyncio.FIRST_COMPLETED)
            if not response.done():
                self.log.info("%s disconnected during its record transfer", d.address)
                return
            op, code = response.result()
        except TimeoutError:
            with contextlib.suppress(Exception):  # the meter may be gone; the abort is a courtesy
                async with asyncio.timeout(5):
                    await client.write_gatt_char(RACP, glucose.ABORT_REQUEST, response=True)
            self._bad("racp_failures", f"glucose: no RACP response within {d.records_timeout:g}s")
            return
        finally:
            disconnected.cancel()
            self._racp = None
            self.pairing.flush()
            self._save_sequence()
        if op == glucose.RACP_REPORT and code in (glucose.SUCCESS, glucose.NO_RECORDS):
            return
        what = "the record transfer was aborted" if op == glucose.RACP_ABORT else glucose.response_text(code)
        self._bad("racp_failures", f"glucose: the meter answered the record request with {what}")

    def _save_sequence(self) -> None:
        if not self._sequence_dirty or self.last_sequence is None or self.device.address is None:
            return
        try:
            self.sequences.save(self.device.address, self.last_sequence)
            self._sequence_dirty = False
        except OSError as exc:
            self._bad("state_errors", f"cannot keep the last glucose record number: {exc}")

    # ------------------------------------------------------------ writes
    async def write(self, point: str, value: Value) -> CommandResult:
        return CommandResult(
            point_id(self.id, point), value, CommandStatus.REJECTED, "BLE points are read-only"
        )
