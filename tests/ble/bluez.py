"""BlueZ without a radio: a private system bus with python-dbusmock's bluez5 template on it.

bleak's real BlueZ backend talks to it exactly as to bluetoothd. The template only knows adapters
and classic devices, so the test installs a few methods on the mock (`code` snippets dbusmock runs
in its own process, with dbus-python types) to add BLE devices whose ServiceData/ManufacturerData
are typed dictionaries (a{sv}/a{qv}, as BlueZ sends them), to change properties with one
PropertiesChanged signal (an advertisement, a notification), and to add GATT services and
characteristics whose StartNotify sets Notifying. The test process drives the mock over D-Bus
with dbus-fast. Every process is started here and stopped by its own PID.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from tests.support.tools import require_python_module, require_tool

BLUEZ = "org.bluez"
MOCK = "org.bluez.Mock"
DBUS_MOCK = "org.freedesktop.DBus.Mock"
DEVICE = "org.bluez.Device1"
ADAPTER = "hci0"
BASE_UUID = "0000{:04x}-0000-1000-8000-00805f9b34fb"

# Runs in the mock process: `self` is the mock object, `args` the D-Bus arguments.
_SET_PROPERTIES = """
obj = objects[args[0]]
for k, v in args[2].items():
    obj.props[args[1]][k] = v
obj.EmitSignal('org.freedesktop.DBus.Properties', 'PropertiesChanged', 'sa{sv}as',
               [args[1], dbus.Dictionary(args[2], signature='sv'), dbus.Array([], signature='s')])
"""
_CONNECT = """
if getattr(self, 'refuse', '') not in ('', 'hang'):
    raise dbus.exceptions.DBusException(self.refuse, name='org.bluez.Error.Failed')
changed = {'Connected': dbus.Boolean(True, variant_level=1)}
if getattr(self, 'refuse', '') != 'hang':  # 'hang': connected, service discovery never ends
    changed['ServicesResolved'] = dbus.Boolean(True, variant_level=1)
self.props['org.bluez.Device1'].update(changed)
self.EmitSignal('org.freedesktop.DBus.Properties', 'PropertiesChanged', 'sa{sv}as',
                ['org.bluez.Device1', dbus.Dictionary(changed, signature='sv'), dbus.Array([], signature='s')])
"""
_DISCONNECT = """
changed = {'Connected': dbus.Boolean(False, variant_level=1),
           'ServicesResolved': dbus.Boolean(False, variant_level=1)}
self.props['org.bluez.Device1'].update(changed)
self.EmitSignal('org.freedesktop.DBus.Properties', 'PropertiesChanged', 'sa{sv}as',
                ['org.bluez.Device1', dbus.Dictionary(changed, signature='sv'), dbus.Array([], signature='s')])
"""
_ADD_DEVICE = f"""
path = '/org/bluez/{ADAPTER}/dev_' + args[0].replace(':', '_').upper()
props = {{
    'Address': dbus.String(args[0], variant_level=1),
    'AddressType': dbus.String('public', variant_level=1),
    'Name': dbus.String(args[1], variant_level=1),
    'Alias': dbus.String(args[1], variant_level=1),
    'Adapter': dbus.ObjectPath('/org/bluez/{ADAPTER}', variant_level=1),
    'Paired': dbus.Boolean(False, variant_level=1),
    'Bonded': dbus.Boolean(False, variant_level=1),
    'Trusted': dbus.Boolean(False, variant_level=1),
    'Blocked': dbus.Boolean(False, variant_level=1),
    'LegacyPairing': dbus.Boolean(False, variant_level=1),
    'Connected': dbus.Boolean(False, variant_level=1),
    'ServicesResolved': dbus.Boolean(False, variant_level=1),
    'RSSI': dbus.Int16(-70, variant_level=1),
    'UUIDs': dbus.Array([], signature='s', variant_level=1),
    'ServiceData': dbus.Dictionary({{}}, signature='sv', variant_level=1),
    'ManufacturerData': dbus.Dictionary({{}}, signature='qv', variant_level=1),
}}
self.AddObject(path, 'org.bluez.Device1', props, [
    ('Connect', '', '', {_CONNECT!r}),
    ('Disconnect', '', '', {_DISCONNECT!r}),
])
objects[path].refuse = args[2]
self.EmitSignal('org.freedesktop.DBus.ObjectManager', 'InterfacesAdded', 'oa{{sa{{sv}}}}',
                [dbus.ObjectPath(path), {{'org.bluez.Device1': props}}])
ret = path
"""
_ADD_GATT = """
device, suuid, cuuid = args[0], args[1], args[2]
n = 0
for p in objects:
    n += p.startswith(device + '/service') and p.count('/') == device.count('/') + 1
spath = device + '/service%04x' % (0x10 * (n + 1))
sprops = {'UUID': dbus.String(suuid, variant_level=1),
          'Device': dbus.ObjectPath(device, variant_level=1),
          'Primary': dbus.Boolean(True, variant_level=1)}
self.AddObject(spath, 'org.bluez.GattService1', sprops, [])
cpath = spath + '/char%04x' % (0x10 * (n + 1) + 1)
cprops = {'UUID': dbus.String(cuuid, variant_level=1),
          'Service': dbus.ObjectPath(spath, variant_level=1),
          'Value': dbus.Array([], signature='y', variant_level=1),
          'Notifying': dbus.Boolean(False, variant_level=1),
          'Flags': dbus.Array(['read', 'indicate'], signature='s', variant_level=1)}
notify = ("self.props['org.bluez.GattCharacteristic1']['Notifying'] = dbus.Boolean(%s, variant_level=1)\\n"
          "self.EmitSignal('org.freedesktop.DBus.Properties', 'PropertiesChanged', 'sa{sv}as', "
          "['org.bluez.GattCharacteristic1', dbus.Dictionary({'Notifying': dbus.Boolean(%s, variant_level=1)}, "
          "signature='sv'), dbus.Array([], signature='s')])")
self.AddObject(cpath, 'org.bluez.GattCharacteristic1', cprops, [
    ('ReadValue', 'a{sv}', 'ay', "ret = self.props['org.bluez.GattCharacteristic1']['Value']"),
    ('StartNotify', '', '', notify % ('True', 'True')),
    ('StopNotify', '', '', notify % ('False', 'False')),
])
for path, iface, props in ((spath, 'org.bluez.GattService1', sprops),
                           (cpath, 'org.bluez.GattCharacteristic1', cprops)):
    self.EmitSignal('org.freedesktop.DBus.ObjectManager', 'InterfacesAdded', 'oa{sa{sv}}',
                    [dbus.ObjectPath(path), {iface: props}])
ret = cpath
"""
# A GATT service with several characteristics (uuid, flags); every characteristic takes writes
# (kept in `writes`) and the one made a glucose meter's Record Access Control Point answers them.
_ADD_SERVICE = """
device, suuid, chars = args[0], args[1], args[2]
n = 0
for p in objects:
    n += p.startswith(device + '/service') and p.count('/') == device.count('/') + 1
spath = device + '/service%04x' % (0x100 * (n + 1))
sprops = {'UUID': dbus.String(suuid, variant_level=1),
          'Device': dbus.ObjectPath(device, variant_level=1),
          'Primary': dbus.Boolean(True, variant_level=1)}
self.AddObject(spath, 'org.bluez.GattService1', sprops, [])
self.EmitSignal('org.freedesktop.DBus.ObjectManager', 'InterfacesAdded', 'oa{sa{sv}}',
                [dbus.ObjectPath(spath), {'org.bluez.GattService1': sprops}])
ret = []
notify = ("self.props['org.bluez.GattCharacteristic1']['Notifying'] = dbus.Boolean(%s, variant_level=1)\\n"
          "self.EmitSignal('org.freedesktop.DBus.Properties', 'PropertiesChanged', 'sa{sv}as', "
          "['org.bluez.GattCharacteristic1', dbus.Dictionary({'Notifying': dbus.Boolean(%s, variant_level=1)}, "
          "signature='sv'), dbus.Array([], signature='s')])")
for i, (cuuid, flags) in enumerate(chars):
    cpath = spath + '/char%04x' % (0x100 * (n + 1) + i + 1)
    cprops = {'UUID': dbus.String(cuuid, variant_level=1),
              'Service': dbus.ObjectPath(spath, variant_level=1),
              'Value': dbus.Array([], signature='y', variant_level=1),
              'Notifying': dbus.Boolean(False, variant_level=1),
              'Flags': dbus.Array(flags, signature='s', variant_level=1)}
    self.AddObject(cpath, 'org.bluez.GattCharacteristic1', cprops, [
        ('ReadValue', 'a{sv}', 'ay', "ret = self.props['org.bluez.GattCharacteristic1']['Value']"),
        ('WriteValue', 'aya{sv}', '', _WRITE),
        ('StartNotify', '', '', notify % ('True', 'True')),
        ('StopNotify', '', '', notify % ('False', 'False')),
    ])
    objects[cpath].writes = []
    self.EmitSignal('org.freedesktop.DBus.ObjectManager', 'InterfacesAdded', 'oa{sa{sv}}',
                    [dbus.ObjectPath(cpath), {'org.bluez.GattCharacteristic1': cprops}])
    ret.append(cpath)
"""
# WriteValue: the glucose meter's side of the Record Access Control Point. Records are
# (sequence, measurement, context) on the RACP object; a report request sends the matching ones
# as Value changes of the measurement and context characteristics (what BlueZ makes of
# notifications), then the RACP response indication, 10 ms apart after the write's reply (a
# meter sends one notification per connection event, never a burst inside the write). `answer`: a response code to send instead
# of the records, -1 to send nothing at all, -2 to send every record whatever the filter.
_WRITE = """
req = bytes(args[0])
self.writes.append(req)
meter = getattr(self, 'records', None)
out = []
if meter is not None and req[:1] == bytes([1]):
    if self.answer > 0 or self.answer == -1:
        out.append((self.path, bytes([6, 0, 1, self.answer])) if self.answer > 0 else None)
    else:
        if req[1] == 1 or self.answer == -2:
            chosen = list(meter)
        elif req[1] == 3 and len(req) >= 5 and req[2] == 1:
            chosen = []
            for r in meter:  # a loop: a comprehension here would not see `req`
                if r[0] >= (req[3] | req[4] << 8):
                    chosen.append(r)
        else:
            chosen = None
        if chosen is None:
            out.append((self.path, bytes([6, 0, 1, 3])))
        else:
            for seq, m, c in chosen:
                out.append((self.meas, m))
                if c:
                    out.append((self.ctx, c))
            out.append((self.path, bytes([6, 0, 1, 1 if chosen else 6])))
elif meter is not None and req[:1] == bytes([3]):
    out.append((self.path, bytes([6, 0, 3, 1])))
from gi.repository import GLib

def send(item):
    v = dbus.Array([dbus.Byte(b) for b in item[1]], signature='y', variant_level=1)
    objects[item[0]].props['org.bluez.GattCharacteristic1']['Value'] = v
    objects[item[0]].EmitSignal('org.freedesktop.DBus.Properties', 'PropertiesChanged', 'sa{sv}as',
        ['org.bluez.GattCharacteristic1', dbus.Dictionary({'Value': v}, signature='sv'),
         dbus.Array([], signature='s')])
    return False

for i, item in enumerate(x for x in out if x is not None):
    GLib.timeout_add(10 * (i + 1), send, item)
"""
_MAKE_METER = """
racp = objects[args[0]]
racp.records, racp.answer, racp.meas, racp.ctx = [], 0, args[1], args[2]
"""
_STORE_RECORD = """
objects[args[0]].records.append((int(args[1]), bytes(args[2]), bytes(args[3])))
"""
_ANSWER = """
objects[args[0]].answer = int(args[1])
"""
_WRITES = """
ret = dbus.Array([dbus.Array(w, signature='y') for w in objects[args[0]].writes], signature='ay')
"""
_REFUSE = """
objects[args[0]].refuse = args[1]
"""


class GlucoseMeter:
    """A glucose meter on the mock: its characteristics' paths and the records it holds."""

    def __init__(self, bluez: MockBluez, measurement: str, context: str, racp: str) -> None:
        self.bluez, self.measurement, self.context, self.racp = bluez, measurement, context, racp

    async def store(self, sequence: int, measurement: bytes, context: bytes = b"") -> None:
        """A record the meter keeps (and sends when asked for records from `sequence` or before)."""
        await self.bluez.call("/", MOCK, "StoreRecord", "sqayay", [self.racp, sequence, measurement, context])

    async def answer(self, code: int) -> None:
        """Answer record requests with this RACP response code instead of records (-1: never
        answer; -2: send every record, ignoring the filter; 0: answer normally again)."""
        await self.bluez.call("/", MOCK, "Answer", "si", [self.racp, code])


class MockBluez:
    """bluetoothd as python-dbusmock plays it, on a bus of our own; see the module docstring."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.address = f"unix:path={directory / 'sysbus'}"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.bus: MessageBus | None = None
        self._log: Any = None

    def _spawn_bus(self, daemon: str) -> subprocess.Popen[bytes]:
        bus_proc = subprocess.Popen(
            [
                daemon,
                "--config-file=/usr/share/dbus-1/session.conf",
                f"--address={self.address}",
                "--nofork",
                "--print-address=1",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,  # "cannot raise the fd limit" as a user: harmless here
        )
        self.procs.append(bus_proc)
        return bus_proc

    def _spawn_mock(self, python: str) -> None:
        self._log = (self.dir / "dbusmock.log").open("wb")
        env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": self.address}
        self.procs.append(
            subprocess.Popen(
                [python, "-m", "dbusmock", "--system", "--template", "bluez5"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=self._log,
            )
        )

    async def start(self) -> None:
        daemon = require_tool("dbus-daemon", "package dbus")
        python = require_python_module("/usr/bin/python3", "dbusmock", "package python3-dbusmock")
        bus_proc = self._spawn_bus(daemon)
        assert bus_proc.stdout is not None
        # the daemon prints its address once it listens
        line = await asyncio.wait_for(asyncio.to_thread(bus_proc.stdout.readline), 20)
        assert line.startswith(b"unix:"), f"dbus-daemon did not start: {line!r}"
        self._spawn_mock(python)
        self.bus = await MessageBus(bus_address=self.address).connect()
        deadline = asyncio.get_running_loop().time() + 30
        while not await self._has_bluez():
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(
                    f"dbusmock did not take {BLUEZ}: {(self.dir / 'dbusmock.log').read_text()}"
                )
            await asyncio.sleep(0.05)
        await self.call("/", MOCK, "AddAdapter", "ss", [ADAPTER, "edge-test"])
        for name, sig, out, code in (
            ("SetProperties", "osa{sv}", "", _SET_PROPERTIES),
            ("AddBleDevice", "sss", "s", _ADD_DEVICE),
            ("AddGatt", "sss", "s", _ADD_GATT),
            ("Refuse", "ss", "", _REFUSE),
            ("AddService", "ssa(sas)", "as", _ADD_SERVICE.replace("_WRITE", repr(_WRITE))),
            ("MakeGlucoseMeter", "sss", "", _MAKE_METER),
            ("StoreRecord", "sqayay", "", _STORE_RECORD),
            ("Answer", "si", "", _ANSWER),
            ("Writes", "s", "aay", _WRITES),
        ):
            await self.call("/", DBUS_MOCK, "AddMethod", "sssss", [MOCK, name, sig, out, code])

    async def _has_bluez(self) -> bool:
        reply = await self.call(
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "NameHasOwner",
            "s",
            [BLUEZ],
            destination="org.freedesktop.DBus",
        )
        return bool(reply[0])

    async def call(
        self,
        path: str,
        interface: str,
        member: str,
        signature: str = "",
        body: list[Any] | None = None,
        *,
        destination: str = BLUEZ,
    ) -> list[Any]:
        assert self.bus is not None
        reply = await self.bus.call(
            Message(
                destination=destination,
                path=path,
                interface=interface,
                member=member,
                signature=signature,
                body=body or [],
            )
        )
        assert reply is not None
        if reply.message_type == MessageType.ERROR:
            raise AssertionError(f"{member} failed: {reply.error_name} {reply.body}")
        return list(reply.body)

    # ------------------------------------------------------------ what a test does
    async def add_device(self, address: str, name: str = "", *, refuse: str = "") -> str:
        """A BLE device that appears while we scan (InterfacesAdded); returns its object path.
        `refuse`: its Connect fails with org.bluez.Error.Failed and this message; `hang`: it
        connects but its service discovery never ends."""
        body = [address, name or address, refuse]
        return str((await self.call("/", MOCK, "AddBleDevice", "sss", body))[0])

    async def set_properties(self, path: str, interface: str, props: dict[str, Variant]) -> None:
        await self.call("/", MOCK, "SetProperties", "osa{sv}", [path, interface, props])

    async def advertise(
        self,
        path: str,
        service_data: dict[str, bytes] | None = None,
        rssi: int = -60,
        *,
        manufacturer_data: dict[int, bytes] | None = None,
    ) -> None:
        """One advertisement: new ServiceData and/or ManufacturerData (keyed by company id) and
        RSSI in one PropertiesChanged, as BlueZ does; a dictionary not given keeps its value."""
        props = {"RSSI": Variant("n", rssi)}
        if service_data is not None:
            props["ServiceData"] = Variant("a{sv}", {k: Variant("ay", v) for k, v in service_data.items()})
        if manufacturer_data is not None:
            props["ManufacturerData"] = Variant(
                "a{qv}", {k: Variant("ay", v) for k, v in manufacturer_data.items()}
            )
        await self.set_properties(path, DEVICE, props)

    async def add_gatt(self, device_path: str, service: int, characteristic: int) -> str:
        """A GATT service with one indicating characteristic; returns the characteristic's path."""
        body = [device_path, BASE_UUID.format(service), BASE_UUID.format(characteristic)]
        return str((await self.call("/", MOCK, "AddGatt", "sss", body))[0])

    async def add_service(
        self, device_path: str, service: int, chars: list[tuple[int, list[str]]]
    ) -> list[str]:
        """A GATT service with the characteristics (uuid, flags) given; returns their paths. Each
        takes writes (see `writes`)."""
        body = [device_path, BASE_UUID.format(service), [[BASE_UUID.format(c), flags] for c, flags in chars]]
        return [str(p) for p in (await self.call("/", MOCK, "AddService", "ssa(sas)", body))[0]]

    async def add_glucose_meter(self, device_path: str) -> GlucoseMeter:
        """The Glucose service (measurement, context, RACP) of a meter that answers record requests
        from the records stored with `GlucoseMeter.store`."""
        meas, ctx, racp = await self.add_service(
            device_path, 0x1808, [(0x2A18, ["notify"]), (0x2A34, ["notify"]), (0x2A52, ["write", "indicate"])]
        )
        await self.call("/", MOCK, "MakeGlucoseMeter", "sss", [racp, meas, ctx])
        return GlucoseMeter(self, meas, ctx, racp)

    async def writes(self, char_path: str) -> list[bytes]:
        """Every value written to the characteristic, in order."""
        return [bytes(w) for w in (await self.call("/", MOCK, "Writes", "s", [char_path]))[0]]

    async def indicate(self, char_path: str, value: bytes) -> None:
        """The instrument sends a value: BlueZ reports it as a change of the characteristic's Value."""
        await self.set_properties(char_path, "org.bluez.GattCharacteristic1", {"Value": Variant("ay", value)})

    async def refuse_connections(self, device_path: str, error: str) -> None:
        """From now on Connect fails with `error` (empty: it succeeds again)."""
        await self.call("/", MOCK, "Refuse", "ss", [device_path, error])

    async def disconnect(self, device_path: str) -> None:
        """The instrument drops the connection (it goes back to sleep)."""
        await self.set_properties(
            device_path,
            DEVICE,
            {"Connected": Variant("b", False), "ServicesResolved": Variant("b", False)},
        )

    async def property(self, path: str, interface: str, name: str) -> Any:
        reply = await self.call(path, "org.freedesktop.DBus.Properties", "Get", "ss", [interface, name])
        return reply[0].value

    async def stop(self) -> None:
        if self.bus is not None:
            self.bus.disconnect()
            self.bus = None
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
                try:
                    await asyncio.wait_for(asyncio.to_thread(proc.wait), 10)
                except TimeoutError:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        self.procs.clear()
        if self._log is not None:
            self._log.close()
