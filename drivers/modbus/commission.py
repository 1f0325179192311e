"""`POST /api/v1/commission/read`: the technician's test-read, served by the Modbus plugin.

`{"point": "dev.p"}` reads the point from the device now when the driver can read on demand
(`read(name)` of the Driver contract, see `edge.driver.reads_on_demand`; any driver, not only
Modbus): `source: "device"` with the read's `duration_ms`; a device that does not answer is a 502
problem whose detail is the driver's reason. A driver that cannot read on demand answers the value
of its last poll with its age (`source: "last_poll"`). `{"device": ID, "table": "holding",
"address": N, "count": N}` reads a raw register range of a Modbus device through `probe.probe()`
and decodes it in every word order; tables, types and per-request limits are the Modbus package's
own; the address may be written as the datasheets do (`"0x2006"`). A device's exception response
is a 502 whose `exception_code` names the Modbus code, with a `message_key` the UI words in the
reader's language. `GET /api/v1/commission/registers/{id}` is the device's register map (each
point's table, address, data type, word order), for the device page and the raw read's defaults.
This module is imported only when the web server starts with the Modbus plugin installed.
Every test-read, answered or not, is written to the audit log.

Privacy: a raw range is refused (403) when it overlaps a configured point above the caller's
class, so the register map plus a raw read cannot bypass the redaction a point read applies. The
holding and input tables are checked as one address space (many meters serve one register file
under both function codes). A read that returns a personal or sensitive value the caller may see,
by point or by a raw range over such points, is also a `read` entry, like every other route's.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, get_args

from aiohttp import web

from drivers.modbus.codec import NUMERIC_TYPES
from drivers.modbus.config import BIT_TABLES, MAX_BITS, MAX_REGISTERS, ModbusDevice, Table, _int
from edge import audit
from edge.api import privacy
from edge.api.auth import Principal, require
from edge.api.problem import Problem, json_response, read_json
from edge.driver import DeviceReadError, reads_on_demand
from edge.model import PRIVACY_RANK, QUALITY_NAMES, Reading

if TYPE_CHECKING:
    from edge.runtime import Runtime

READ_TIMEOUT = 5.0
#: the runtime whose devices the route reads (put in the app by `setup`)
RUNTIME_KEY: web.AppKey[Any] = web.AppKey("modbus_commission_runtime", object)
#: register tables first, then the bit tables (the order the error message and the document list)
TABLES = (*(t for t in get_args(Table) if t not in BIT_TABLES), *BIT_TABLES)
DATA_TYPES = (*NUMERIC_TYPES, "string")
ASK = 'send {"point": ID} or {"device": ID, "table", "address", "count"}'
#: tables a register-range read may alias: a device may serve one register file under FC3 and FC4
REGISTER_TABLES = frozenset(t for t in TABLES if t not in BIT_TABLES)


async def read_point(runtime: Runtime, point_id: str) -> dict[str, Any]:
    if point_id not in runtime.hub.points:
        raise Problem(404, "Unknown point", f"no point {point_id!r} in this site")
    device, _, name = point_id.partition(".")
    driver = runtime.driver(device)
    if driver is not None and reads_on_demand(driver):
        started = time.monotonic()
        try:
            async with asyncio.timeout(READ_TIMEOUT):
                got = await driver.read(name)
        except TimeoutError:
            raise Problem(
                504, "Device did not answer", f"{device}: no answer within {READ_TIMEOUT:g}s"
            ) from None
        except DeviceReadError as exc:
            raise Problem(502, "Device did not answer", str(exc)) from None
        except LookupError as exc:
            raise Problem(404, "Unknown point", str(exc)) from None
        except NotImplementedError:
            pass  # declared but not available on this instance: answer the last poll
        except Exception as exc:
            raise Problem(502, "Read failed", f"{type(exc).__name__}: {exc}") from None
        else:
            ms = round((time.monotonic() - started) * 1000, 1)
            if isinstance(got, Reading):
                answer = _answer(point_id, got.value, QUALITY_NAMES[got.quality & 3], got.ts, "device")
            else:
                answer = _answer(point_id, got, "good", time.time(), "device")
            return {**answer, "duration_ms": ms}
    latest = runtime.hub.latest.get(point_id)
    if latest is None:
        state = driver.health.state if driver else "stopped"
        raise Problem(504, "No value yet", f"the device has not reported this point (device is {state})")
    return _answer(point_id, latest.value, QUALITY_NAMES[latest.quality & 3], latest.ts, "last_poll")


def _answer(point: str, value: Any, quality: str, ts: float, source: str) -> dict[str, Any]:
    return {
        "point": point,
        "value": value,
        "quality": quality,
        "ts": ts,
        "age_s": round(max(0.0, time.time() - ts), 2),
        "source": source,  # "device": read just now; "last_poll": the driver's latest value
        "duration_ms": None,  # of the read, when source is "device"
    }


def points_in_range(dev: ModbusDevice, table: str, address: int, count: int) -> list[str]:
    """The points of `dev` whose registers (or bits) a raw read of `count` from `address` in
    `table` returns, wholly or in part."""
    tables = REGISTER_TABLES if table in REGISTER_TABLES else {table}
    end = address + count
    return [
        f"{dev.id}.{p.name}" for p in dev.points if p.table in tables and p.address < end and address < p.end
    ]


def check_range(runtime: Runtime, principal: Principal, points: list[str]) -> privacy.ReadCounts:
    """403 naming the points above the caller's class among `points`; else the readable ones
    above public, per class (what the read's audit entry counts)."""
    limit = privacy.limit_for(principal)
    counts: privacy.ReadCounts = privacy.ReadCounts()
    hidden: list[str] = []
    for point in points:
        rank = privacy.point_rank(runtime, point)
        if rank > limit:
            hidden.append(f"{point} ({runtime.hub.points[point].privacy})")
        else:
            privacy.count_read(counts, rank)
    if hidden:
        raise Problem(
            403,
            "Private data",
            f"the range holds {', '.join(hidden)}: your role may not read "
            f"{'it' if len(hidden) == 1 else 'them'}; read the unmapped registers around "
            "or ask an admin",
            points=hidden,
        )
    return counts


def _whole(value: Any, field: str) -> int:
    """A raw read's address or count: an integer, or its decimal or hex text (8198, "0x2006"); a
    fraction, true/false or anything else is refused naming the field, never truncated."""
    try:
        number = _int(value, field)
    except ValueError:
        number = None
    if type(number) is int:
        return number
    if type(number) is float and number.is_integer():
        return int(number)
    raise Problem(
        422,
        "Bad range",
        f"{field} is an integer, decimal or hex (8198 or 0x2006), not {str(value)[:40]!r}",
        message_key="msg.commission.not_whole",
        args={"field": field},
    )


async def read_registers(
    runtime: Runtime, principal: Principal, body: dict[str, Any], counts: privacy.ReadCounts
) -> dict[str, Any]:
    device_id = body.get("device")
    try:
        dev = runtime.site.device(str(device_id))
    except KeyError:
        raise Problem(404, "Unknown device", f"no device {device_id!r} in this site") from None
    if not isinstance(dev, ModbusDevice):
        raise Problem(422, "Not a Modbus device", f"{dev.id} uses the {dev.driver} driver")
    table = body.get("table", "holding")
    if table not in TABLES:
        raise Problem(422, "Bad table", f"table is one of: {', '.join(TABLES)}")
    address = _whole(body.get("address", 0), "address")
    count = _whole(body.get("count", 2), "count")
    limit = MAX_BITS if table in BIT_TABLES else MAX_REGISTERS
    if not 0 <= address <= 65535 or not 1 <= count <= limit:
        raise Problem(422, "Bad range", f"address 0-65535 and count 1-{limit} for {table}")
    data_type = body.get("type", "float32")
    if data_type not in DATA_TYPES:
        raise Problem(422, "Bad type", f"type is one of: {', '.join(DATA_TYPES)}")
    # before the device is asked: a refused range is never read
    counts.update(check_range(runtime, principal, points_in_range(dev, table, address, count)))
    # pymodbus is loaded at the first raw read, not when the web server starts
    from drivers.modbus.probe import probe
    from drivers.modbus.transport import DeviceException

    try:
        async with asyncio.timeout(READ_TIMEOUT * 2):
            result = await probe(
                dev.connection,
                unit=dev.unit,
                table=table,
                address=address,
                count=count,
                data_type=data_type,
                timeout=READ_TIMEOUT,
            )
    except TimeoutError:
        raise Problem(504, "Device did not answer", f"no answer within {READ_TIMEOUT * 2:g}s") from None
    except DeviceException as exc:
        name = DeviceException.NAMES.get(exc.code, "unknown")
        raise Problem(
            502,
            "The device refused the read",
            f"Modbus exception {exc.code} ({name}) for {table} {address} (0x{address:04X}) count {count}",
            message_key="modbus.exception",
            args={"code": exc.code, "table": table, "address": address, "count": count},
            exception_code=exc.code,
        ) from None
    except Exception as exc:
        raise Problem(502, "Read failed", f"{type(exc).__name__}: {exc}") from None
    return dict(result)


def register_map(dev: ModbusDevice) -> dict[str, Any]:
    """Where each point of `dev` lives: what a technician compares with the datasheet."""
    return {
        "device": dev.id,
        "unit": dev.unit,
        "profile": dev.profile,
        "points": [
            {
                "point": f"{dev.id}.{p.name}",
                "name": p.name,
                "table": p.table,
                "address": p.address,
                "count": p.count,
                "type": p.type,
                "order": p.order if p.table not in BIT_TABLES and p.count > 1 else None,
                "bit": p.bit,
                "scale": p.scale,
                "offset": p.offset,
                "writable": p.writable,
            }
            for p in dev.points
        ],
    }


async def registers(request: web.Request) -> web.Response:
    require(request, "read")
    runtime: Runtime = request.app[RUNTIME_KEY]
    device_id = request.match_info["id"]
    try:
        dev = runtime.site.device(device_id)
    except KeyError:
        raise Problem(404, "Unknown device", f"no device {device_id!r} in this site") from None
    if not isinstance(dev, ModbusDevice):
        raise Problem(404, "Not a Modbus device", f"{dev.id} uses the {dev.driver} driver: no registers")
    return json_response(register_map(dev))


def _audited(
    runtime: Runtime, actor: str, target: str, answer: dict[str, Any] | None, problem: Problem | None
) -> None:
    if runtime.state is None:
        return
    if problem is not None:
        audit.record(
            runtime.state,
            actor,
            "commission_read",
            target,
            ok=False,
            status=problem.status,
            reason=problem.detail,
        )
    elif answer is not None:
        # the value itself stays out of the log: a point may hold personal data
        audit.record(
            runtime.state,
            actor,
            "commission_read",
            target,
            ok=True,
            source=answer.get("source", "device"),
            quality=answer.get("quality"),
            duration_ms=answer.get("duration_ms"),
        )


async def commission_read(request: web.Request) -> web.Response:
    principal = require(request, "write")
    runtime: Runtime = request.app[RUNTIME_KEY]
    body = await read_json(request, 4096)
    if not isinstance(body, dict):
        raise Problem(400, "Expected a JSON object", ASK)
    counts: privacy.ReadCounts = privacy.ReadCounts()  # values above public the caller receives
    if "point" in body:
        target = str(body["point"])
        reading = read_point(runtime, target)
    elif "device" in body:
        target = f"{body['device']}:{body.get('table', 'holding')}:{body.get('address', 0)}"
        reading = read_registers(runtime, principal, body, counts)
    else:
        raise Problem(400, "Nothing to read", ASK)
    try:
        answer = await reading
    except Problem as problem:
        # a malformed ask reached no device; a refused private range is worth the log
        if problem.status not in (400, 404, 422, 501):
            _audited(runtime, principal.name, target, None, problem)
        raise
    _audited(runtime, principal.name, target, answer, None)
    if "point" in body:
        info = runtime.hub.points[target]
        if privacy.minimise_history(runtime, principal, target):
            # the device answered (that is what commissioning checks); the value stays hidden
            answer = {**answer, "value": None, "redacted": str(info.privacy)}
        else:
            privacy.count_read(counts, PRIVACY_RANK[info.privacy])
    await privacy.audit_reads(
        runtime, principal, privacy.route_of(request.method, request.path), counts, read=target
    )
    return json_response(answer)


def setup(app: web.Application, runtime: Runtime) -> None:
    app[RUNTIME_KEY] = runtime
    app.router.add_post("/api/v1/commission/read", commission_read)
    app.router.add_get("/api/v1/commission/registers/{id}", registers)
