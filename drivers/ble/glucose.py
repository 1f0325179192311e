"""The Glucose Profile: Glucose Measurement (0x2A18), its Context (0x2A34) and the Record Access
Control Point (0x2A52) through which a collector asks a meter for its stored records.

A glucose meter keeps its results and numbers them (the sequence number, 16 bits). On connect the
driver asks for the records from the one after the last it received ("report stored records,
greater than or equal to"); the meter sends each measurement, then its context when the
measurement's flag says one follows (same sequence number), and ends with an RACP response
(success, no records found, or an error). `Pairing` puts measurements and contexts together and
`SequenceStore` keeps the last sequence number per meter across restarts.

The decoders raise `BadMeasurement` for bytes that do not fit their flags; `glucose_record` turns a
measurement (with its context, if any) into the event payload.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drivers.ble.ieee11073 import SpecialValue, decode_sfloat
from drivers.ble.measurements import BadMeasurement, date_time, need, u16

MG_DL_PER_MMOL_L = 18.016  # glucose, 180.16 g/mol: 1 mmol/L = 18.016 mg/dL

SAMPLE_TYPES = {
    1: "capillary whole blood",
    2: "capillary plasma",
    3: "venous whole blood",
    4: "venous plasma",
    5: "arterial whole blood",
    6: "arterial plasma",
    7: "undetermined whole blood",
    8: "undetermined plasma",
    9: "interstitial fluid",
    10: "control solution",
}
SAMPLE_LOCATIONS = {1: "finger", 2: "alternate site", 3: "earlobe", 4: "control solution"}
LOCATION_NOT_AVAILABLE = 15
#: Sensor Status Annunciation bit -> name
SENSOR_STATUS = {
    0: "battery low",
    1: "sensor malfunction",
    2: "sample size insufficient",
    3: "strip insertion error",
    4: "strip type incorrect",
    5: "result above the device's range",
    6: "result below the device's range",
    7: "sensor temperature too high",
    8: "sensor temperature too low",
    9: "strip pulled too soon",
    10: "general device fault",
    11: "time fault",
}
CARBOHYDRATES = {1: "breakfast", 2: "lunch", 3: "dinner", 4: "snack", 5: "drink", 6: "supper", 7: "brunch"}
MEALS = {1: "preprandial", 2: "postprandial", 3: "fasting", 4: "casual", 5: "bedtime"}
TESTERS = {1: "self", 2: "health care professional", 3: "lab test"}
HEALTH = {
    1: "minor health issues",
    2: "major health issues",
    3: "during menses",
    4: "under stress",
    5: "no health issues",
}
MEDICATIONS = {
    1: "rapid acting insulin",
    2: "short acting insulin",
    3: "intermediate acting insulin",
    4: "long acting insulin",
    5: "pre-mixed insulin",
}

# Record Access Control Point (op codes, operators, response codes)
RACP_REPORT = 0x01
RACP_ABORT = 0x03
RACP_RESPONSE = 0x06
OPERATOR_ALL = 0x01
OPERATOR_GE = 0x03
FILTER_SEQUENCE = 0x01
SUCCESS = 0x01
NO_RECORDS = 0x06
RESPONSE_CODES = {
    1: "success",
    2: "op code not supported",
    3: "invalid operator",
    4: "operator not supported",
    5: "invalid operand",
    6: "no records found",
    7: "abort unsuccessful",
    8: "procedure not completed",
    9: "operand not supported",
}


@dataclass
class Measurement:
    """One decoded Glucose Measurement: its sequence number, whether a context follows, the payload."""

    sequence: int
    context_follows: bool
    payload: dict[str, Any]


def _bits(value: int, names: dict[int, str]) -> list[str]:
    return [names.get(bit, f"bit {bit}") for bit in range(value.bit_length()) if value >> bit & 1]


def _sfloat(data: bytes, pos: int, what: str) -> float:
    try:
        return decode_sfloat(u16(data, pos))
    except SpecialValue as exc:
        raise BadMeasurement(f"{what}: {exc}") from None


def measurement(data: bytes) -> Measurement:
    """Glucose Measurement: flags, sequence number, base time, then the fields the flags announce.
    Raises BadMeasurement when the bytes are fewer than the flags say."""
    need(data, 10, "glucose measurement")
    flags = data[0]
    size = 10 + (2 if flags & 0x01 else 0) + (3 if flags & 0x02 else 0) + (2 if flags & 0x08 else 0)
    need(data, size, f"glucose measurement with flags 0x{flags:02x}")
    payload: dict[str, Any] = {"sequence": u16(data, 1)}
    base = date_time(data, 3)
    pos = 10
    offset = 0
    if flags & 0x01:
        offset = int.from_bytes(data[pos : pos + 2], "little", signed=True)
        payload["time_offset_min"] = offset
        pos += 2
    if base is not None:
        payload["measured_at"] = _plus_minutes(base, offset)
    if flags & 0x02:
        raw = u16(data, pos)
        try:
            value = decode_sfloat(raw)
        except SpecialValue as exc:
            payload["concentration_special"] = exc.name
        else:
            _concentration(payload, value, mol=bool(flags & 0x04))
        sample = data[pos + 2]
        if sample & 0x0F:
            payload["sample_type"] = SAMPLE_TYPES.get(sample & 0x0F, f"type {sample & 0x0F}")
        if sample >> 4 not in (0, LOCATION_NOT_AVAILABLE):
            payload["sample_location"] = SAMPLE_LOCATIONS.get(sample >> 4, f"location {sample >> 4}")
        pos += 3
    if flags & 0x08:
        status = u16(data, pos)
        if status:
            payload["sensor_status"] = _bits(status, SENSOR_STATUS)
    return Measurement(payload["sequence"], bool(flags & 0x10), payload)


def _concentration(payload: dict[str, Any], value: float, *, mol: bool) -> None:
    """Both units in the payload, the sent one exact and the other converted; `unit_sent` says
    which one the meter sent (kg/L: mg/dL x 10^-5; mol/L: mmol/L x 10^-3)."""
    if mol:
        mmol = round(value * 1000, 6)
        payload["glucose_mmol_l"] = _tidy(mmol)
        payload["glucose_mg_dl"] = round(mmol * MG_DL_PER_MMOL_L)
        payload["unit_sent"] = "mol/L"
    else:
        mg = round(value * 100_000, 6)
        payload["glucose_mg_dl"] = _tidy(mg)
        payload["glucose_mmol_l"] = round(mg / MG_DL_PER_MMOL_L, 1)
        payload["unit_sent"] = "kg/L"


def _tidy(value: float) -> float | int:
    return int(value) if value == int(value) else value


def _plus_minutes(iso: str, minutes: int) -> str:
    if not minutes:
        return iso
    import datetime as dt

    return (dt.datetime.fromisoformat(iso) + dt.timedelta(minutes=minutes)).isoformat()


def context(data: bytes) -> tuple[int, dict[str, Any]]:
    """Glucose Measurement Context: (sequence number, the context's payload fields)."""
    need(data, 3, "glucose context")
    flags = data[0]
    sizes = ((0x80, 1), (0x01, 3), (0x02, 1), (0x04, 1), (0x08, 3), (0x10, 3), (0x40, 2))
    need(data, 3 + sum(n for bit, n in sizes if flags & bit), f"glucose context with flags 0x{flags:02x}")
    sequence = u16(data, 1)
    out: dict[str, Any] = {}
    pos = 3
    if flags & 0x80:  # extended flags: reserved for future use, skipped
        pos += 1
    if flags & 0x01:
        out["carbohydrate_meal"] = CARBOHYDRATES.get(data[pos], f"id {data[pos]}")
        out["carbohydrate_g"] = _tidy(round(_sfloat(data, pos + 1, "carbohydrate") * 1000, 3))
        pos += 3
    if flags & 0x02:
        out["meal"] = MEALS.get(data[pos], f"meal {data[pos]}")
        pos += 1
    if flags & 0x04:
        tester, health = data[pos] & 0x0F, data[pos] >> 4
        if tester and tester != 15:
            out["tester"] = TESTERS.get(tester, f"tester {tester}")
        if health and health != 15:
            out["health"] = HEALTH.get(health, f"health {health}")
        pos += 1
    if flags & 0x08:
        out["exercise_s"] = u16(data, pos)
        out["exercise_intensity_pct"] = data[pos + 2]
        pos += 3
    if flags & 0x10:
        out["medication"] = MEDICATIONS.get(data[pos], f"medication {data[pos]}")
        amount = _sfloat(data, pos + 1, "medication")
        if flags & 0x20:  # litres
            out["medication_ml"] = _tidy(round(amount * 1000, 3))
        else:  # kilograms
            out["medication_mg"] = _tidy(round(amount * 1_000_000, 3))
        pos += 3
    if flags & 0x40:
        out["hba1c_pct"] = _tidy(_sfloat(data, pos, "HbA1c"))
    return sequence, out


def report_request(last: int | None) -> bytes:
    """The RACP request for the records after `last` (all of them when None)."""
    if last is None:
        return bytes([RACP_REPORT, OPERATOR_ALL])
    return bytes([RACP_REPORT, OPERATOR_GE, FILTER_SEQUENCE]) + ((last + 1) & 0xFFFF).to_bytes(2, "little")


ABORT_REQUEST = bytes([RACP_ABORT, 0x00])


def racp_response(data: bytes) -> tuple[int, int] | None:
    """(request op code, response code) of an RACP response indication; None for anything else
    (a number-of-records response, or bytes that are no response)."""
    if len(data) >= 4 and data[0] == RACP_RESPONSE:
        return data[2], data[3]
    return None


def response_text(code: int) -> str:
    return RESPONSE_CODES.get(code, f"response code {code}")


@dataclass
class Pairing:
    """Measurements waiting for their context. A measurement whose flag says a context follows is
    held until the context with its sequence number arrives; the next measurement, the end of the
    transfer or the disconnect releases it without one (`unpaired` counts those)."""

    emit: Callable[[Measurement, dict[str, Any] | None], None]
    waiting: Measurement | None = None
    unpaired: int = 0
    orphans: int = 0  # contexts without their measurement: dropped

    def on_measurement(self, m: Measurement) -> None:
        self.flush()
        if m.context_follows:
            self.waiting = m
        else:
            self.emit(m, None)

    def on_context(self, sequence: int, fields: dict[str, Any]) -> None:
        if self.waiting is not None and self.waiting.sequence == sequence:
            m, self.waiting = self.waiting, None
            self.emit(m, fields)
        else:
            self.orphans += 1

    def flush(self) -> None:
        if self.waiting is not None:
            m, self.waiting = self.waiting, None
            self.unpaired += 1
            self.emit(m, None)


@dataclass
class SequenceStore:
    """The last sequence number received from each meter, in one small JSON file per meter under
    `directory` (written to a temporary file, synced and renamed, so a power cut leaves the old or
    the new number, never a torn file)."""

    directory: Path
    cache: dict[str, int | None] = field(default_factory=dict)

    def path(self, address: str) -> Path:
        return self.directory / f"{address.replace(':', '').lower()}.json"

    def load(self, address: str) -> int | None:
        """The last sequence number, None when none was received (or the file is unreadable: the
        meter then sends all its records again, which repeats rather than loses them)."""
        if address not in self.cache:
            try:
                doc = json.loads(self.path(address).read_text(encoding="utf-8"))
                value = doc.get("last_sequence") if isinstance(doc, dict) else None
                self.cache[address] = value if isinstance(value, int) and 0 <= value <= 0xFFFF else None
            except (OSError, ValueError):
                self.cache[address] = None
        return self.cache[address]

    def save(self, address: str, sequence: int) -> None:
        """Raises OSError when the file cannot be written (the caller reports it)."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        final = self.path(address)
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=final.stem, suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({"address": address, "last_sequence": sequence}, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, final)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self.cache[address] = sequence


def glucose_record(m: Measurement, ctx: dict[str, Any] | None) -> dict[str, Any]:
    """The event payload of a measurement and its context; BadMeasurement when it has no value."""
    payload = dict(m.payload)
    special = payload.pop("concentration_special", None)
    if special is not None:
        raise BadMeasurement(f"glucose record {m.sequence}: the meter sent {special} instead of a number")
    if "glucose_mmol_l" not in payload:
        raise BadMeasurement(f"glucose record {m.sequence}: no concentration")
    if ctx:
        payload.update(ctx)
    return payload
