"""Keyed pseudonyms: what a recipient sees instead of a plate or a resident id.

A pseudonym is HMAC-SHA256 of the value's canonical text under the recipient's own key, printed
as `ps_` and the first 20 characters of the digest's base32 (100 bits, lowercase). The same
value under the same key is the same pseudonym on every run and in every process, so a central
platform can still count a resident's visits; two recipients with different keys get unrelated
pseudonyms and cannot join their data; without the key a pseudonym cannot be turned back into
the value, nor checked against a guessed plate.

Collision odds: with n distinct values under one key, the chance that any two share a pseudonym
is about n² / 2¹⁰¹: for a large site's whole history (10⁶ distinct plates and residents) about
4 × 10⁻¹⁹, for 10,000 residents about 4 × 10⁻²³.

The value alone is hashed, not its field name, so the same resident id under `resident` in a
blood-pressure event and in a weight event gives the same pseudonym, and a later notice that a
subject was erased can name the subject's pseudonym for each recipient.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import operator
import time
from collections.abc import Callable, Container, Iterable, Mapping
from typing import Any

import orjson
from pydantic import field_validator, model_validator

from edge.model import PRIVACY_RANK, PointInfo, Privacy
from edge.privacy.keyfile import KeyFileError, read_key
from edge.validation import SitePath, Strict

PREFIX = "ps_"
DIGEST_CHARS = 20  # base32 characters: 5 bits each, 100 bits
MIN_KEY_BYTES = 32

#: Payload fields that identify a person, per event kind the shipped drivers and rule packs emit:
#: the demo gate's `vehicle_passage` and the parking pack's `vehicle` carry the licence plate; the
#: simulated kiosk's measurements carry the resident id, a BLE cuff's, scale's or thermometer's the
#: device's user index (which, with the device, names one person), a glucose meter's or
#: oximeter's the `resident` its device entry names; an alert acknowledgement (`alert_ack`) carries
#: the account name of who acknowledged it. Measurement values are
#: sensitive but do not identify anyone on their own: they are withheld or encrypted, not
#: pseudonymised.
DEFAULT_FIELDS: dict[str, tuple[str, ...]] = {
    "vehicle_passage": ("plate",),
    "vehicle": ("plate",),
    "blood_pressure": ("resident", "user"),
    "weight": ("resident", "user"),
    "body_temperature": ("resident", "user"),
    "glucose": ("resident", "user"),
    "spo2": ("resident", "user"),
    "alert_ack": ("user",),  # the account that acknowledged an alert
    "snapshot": ("subject",),  # the resident or plate a camera's picture is about
}
KNOWN_FIELDS = frozenset(f for fields in DEFAULT_FIELDS.values() for f in fields)


def value_names(payload: Any, private_points: Container[str]) -> str | None:
    """Whom an event payload names by its `value`: the value, when the payload's `point` is one of
    `private_points` (the site's personal and sensitive points) and the value a non-empty string
    (a rule's alert on a gate's `last_plate` carries the plate), as that point's own readings name
    it; else None. The one rule that the sealing at rest (`edge.privacy.atrest.subject_of`), a
    subject's export and forget (`edge.privacy.subjects`), each recipient's pseudonyms
    (`RecordShaper`) and the record of processing (`edge.privacy.report`) apply."""
    if not isinstance(payload, Mapping):
        return None
    point, value = payload.get("point"), payload.get("value")
    if type(value) is str and value and isinstance(point, str) and point in private_points:
        return value
    return None


def shaped_fields(names: frozenset[str], payload: Any, private_points: Container[str]) -> frozenset[str]:
    """The fields of an event payload a recipient receives as pseudonyms (withheld, without a
    key): `names`, the identifying fields of its kind for that recipient, and `value` when the
    payload names someone by it (`value_names`). What `RecordShaper` replaces, and what the record
    of processing says it replaces."""
    return names | {"value"} if value_names(payload, private_points) is not None else names


def canonical_text(value: object) -> str:
    """The text a value is hashed as: a string as it is, anything else as compact JSON with sorted
    keys (3 -> "3", True -> "true", {"b": 1, "a": 2} -> '{"a":2,"b":1}')."""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def pseudonym(key: bytes, value: object) -> str:
    """The recipient's pseudonym of `value` under `key`."""
    digest = hmac.new(key, canonical_text(value).encode("utf-8"), hashlib.sha256).digest()
    return PREFIX + base64.b32encode(digest)[:DIGEST_CHARS].decode("ascii").lower()


FINGERPRINT_INFO = b"community-edge recipient fingerprint"
ERASED_KIND = "subject_erased"  # an erasure notice: each recipient receives only its own pseudonym


def key_fingerprint(key: bytes) -> str:
    """A recipient's pseudonym key named without revealing it (16 hex digits)."""
    return hmac.new(key, FINGERPRINT_INFO, hashlib.sha256).hexdigest()[:16]


KEY_CHANGED_KIND = "pseudonym_key_changed"  # a recipient's pseudonym key differs from the last start's
FINGERPRINT_META = "pseudonym_key_fingerprint:"  # + the recipient: its key's fingerprint at the last start


def recipient_fingerprints(recipients: Iterable[tuple[str, PseudonymiseConfig | None]]) -> dict[str, str]:
    """The fingerprint of each recipient's pseudonym key, by recipient (`upstream central`,
    `consumer city`); a recipient without a `pseudonymise:` block, or whose key cannot be read
    (its sink or consumer refuses to start and says why), is left out."""
    out: dict[str, str] = {}
    for what, cfg in recipients:
        if cfg is None:
            continue
        try:
            key = load_pseudonym_key(cfg.key_file, cfg.key_env, f"{what} pseudonymise")
        except KeyFileError:
            continue
        out[what] = key_fingerprint(key)
    return out


def key_changes(now: Mapping[str, str], recorded: Mapping[str, str | None]) -> list[dict[str, str]]:
    """The recipients whose key fingerprint differs from the one recorded at the previous start:
    one `pseudonym_key_changed` payload each (the recipient, the fingerprints before and now; a
    fingerprint names a key without revealing it). A recipient with nothing recorded (the first
    start that sees it) is not a change."""
    return [
        {"recipient": what, "previous_fingerprint": old, "fingerprint": fp}
        for what, fp in sorted(now.items())
        if (old := recorded.get(what)) is not None and old != fp
    ]


def erasure_for(payload: Mapping[str, Any], key: bytes | None) -> dict[str, Any]:
    """What one recipient (its pseudonym key, None without one) sees of a subject_erased notice:
    its own pseudonym of the subject, never the site's nor another recipient's."""
    recipients = payload.get("recipients")
    own = recipients.get(key_fingerprint(key)) if key is not None and isinstance(recipients, dict) else None
    out: dict[str, Any] = {"subject": own}
    if own is None:
        out["subject_withheld"] = "no pseudonym key" if key is None else "key not known at the erasure"
    return out


def load_pseudonym_key(key_file: str | None, key_env: str | None, what: str = "pseudonymise") -> bytes:
    """A recipient's pseudonym key from its reference; at least MIN_KEY_BYTES bytes of it."""
    key, source = read_key(key_file, key_env, what)
    if len(key) < MIN_KEY_BYTES:
        raise KeyFileError(
            key_file or "environment",
            f"{what}: the key from {source} is {len(key)} bytes; at least {MIN_KEY_BYTES} are "
            "needed (for example `openssl rand -base64 48`)",
        )
    return key


def pseudonymise_payload(payload: Mapping[str, Any], fields: Iterable[str], key: bytes) -> dict[str, Any]:
    """A copy of an event payload with the value of every key named in `fields` replaced by its
    pseudonym, at any depth (inside nested objects and lists); the payload itself is unchanged.
    A value that is an object or a list becomes one pseudonym of its canonical text; a null stays
    null (there is nobody to hide)."""
    names = frozenset(fields)
    return _replace(payload, names, key) if names else _copy(payload)


def _replace(payload: Mapping[str, Any], names: frozenset[str], key: bytes) -> dict[str, Any]:
    return {
        k: pseudonym(key, v) if k in names and v is not None else _inner(v, names, key)
        for k, v in payload.items()
    }


def _inner(value: Any, names: frozenset[str], key: bytes) -> Any:
    if isinstance(value, Mapping):
        return _replace(value, names, key)
    if isinstance(value, list | tuple):
        return [_inner(v, names, key) for v in value]
    return value


def _copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_copy(v) for v in value]
    return value


#: What a recipient without a pseudonym key gets in place of an identifying field's value (beside a
#: null): the field is withheld, never sent in clear.
WITHHELD = "no pseudonym key"


def withhold_payload(payload: Mapping[str, Any], fields: Iterable[str]) -> dict[str, Any]:
    """A copy of an event payload with every key named in `fields` (at any depth) set to null and a
    `<field>_withheld` marker beside it, for a recipient that has no pseudonym key."""
    return _withhold(payload, frozenset(fields))


def _withhold(payload: Mapping[str, Any], names: frozenset[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in payload.items():
        if k in names and v is not None:
            out[k] = None
            out[f"{k}_withheld"] = WITHHELD
        elif isinstance(v, Mapping):
            out[k] = _withhold(v, names)
        elif isinstance(v, list | tuple):
            out[k] = [_withhold(i, names) if isinstance(i, Mapping) else i for i in v]
        else:
            out[k] = v
    return out


class PseudonymiseConfig(Strict):
    """A sink's or a pull consumer's `pseudonymise:` block. The fields of DEFAULT_FIELDS are
    pseudonymised for every recipient; `fields` adds the site's own (a custom event kind's
    `badge`), `clear` names those this recipient must see as they are."""

    fields: list[str] = []
    clear: list[str] = []
    key_file: SitePath | None = None
    key_env: str | None = None

    @field_validator("fields", "clear")
    @classmethod
    def _names(cls, v: list[str]) -> list[str]:
        for name in v:
            if not name.strip() or name != name.strip():
                raise ValueError(f"invalid field name {name!r}: a payload key without surrounding spaces")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> PseudonymiseConfig:
        if bool(self.key_file) == bool(self.key_env):
            raise ValueError(
                "a recipient pseudonymises with its own key: give key_file: PATH or key_env: VARIABLE "
                "(exactly one)"
            )
        both = sorted(set(self.fields) & set(self.clear))
        if both:
            raise ValueError(f"{', '.join(both)}: named in both fields: and clear:")
        known = KNOWN_FIELDS | set(self.fields)
        unknown = sorted(set(self.clear) - known)
        if unknown:
            raise ValueError(
                f"clear: {', '.join(unknown)} is not a pseudonymised field; "
                f"pseudonymised fields: {', '.join(sorted(known))}"
            )
        return self

    def fields_for(self, kind: str) -> frozenset[str]:
        """The payload fields of an event of `kind` that this recipient receives as pseudonyms."""
        return frozenset((*DEFAULT_FIELDS.get(kind, ()), *self.fields)) - frozenset(self.clear)


class Pseudonymiser:
    """One recipient's pseudonyms: its configuration and its key, loaded once."""

    def __init__(self, config: PseudonymiseConfig, what: str = "pseudonymise"):
        self.config = config
        self.key = load_pseudonym_key(config.key_file, config.key_env, what)

    def value(self, value: object) -> str:
        return pseudonym(self.key, value)

    def payload(self, kind: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of an event payload as this recipient may see it."""
        return pseudonymise_payload(payload, self.config.fields_for(kind), self.key)


# ---------------------------------------------------------------- where a record leaves
# a journal row as edge.store.reader.Row (seq, ts, point, value, quality, kind, severity, payload):
# spelled here: edge.privacy.report imports the store, which must not import edge.privacy back
Row = tuple[Any, ...]
_KIND = operator.itemgetter(5)
_PERSONAL_RANK = PRIVACY_RANK[Privacy.PERSONAL]


class RecordShaper:
    """What one recipient sees of the rows it may receive: identifying event fields and personal
    string points' values as its pseudonyms (`pseudonymiser`), or withheld when it has no key.
    Thread-safe: it keeps no state between rows but a cache of field names per event kind."""

    def __init__(
        self,
        pseudonymiser: Pseudonymiser | None,
        points: Callable[[], Mapping[str, PointInfo]],
        version: Callable[[], int] | None = None,
    ) -> None:
        self.pseudonymiser = pseudonymiser
        self._points = points
        self._version = version
        self._fields: dict[str, tuple[frozenset[str], tuple[str, ...]]] = {}
        self._personal: frozenset[str] = frozenset()
        self._personal_key: tuple[int, int, int] | None = None

    def personal_points(self) -> frozenset[str]:
        """Registered points of class `personal` or above, recomputed as RecordFilter.refresh
        does (whenever a point is registered or rises to a private class)."""
        points = self._points()
        ver = self._version() if self._version is not None else int(time.monotonic() / 5)
        key = (id(points), len(points), ver)
        if key != self._personal_key:
            snapshot = dict(points)  # one C call: the loop may be growing the dict
            self._personal = frozenset(
                pid for pid, info in snapshot.items() if PRIVACY_RANK[info.privacy] >= _PERSONAL_RANK
            )
            self._personal_key = key
        return self._personal

    def fields_for(self, kind: str) -> frozenset[str]:
        """The payload fields of an event of `kind` this recipient gets as pseudonyms (or withheld)."""
        return self._kind(kind)[0]

    def _kind(self, kind: str) -> tuple[frozenset[str], tuple[str, ...]]:
        found = self._fields.get(kind)
        if found is None:
            p = self.pseudonymiser
            names = p.config.fields_for(kind) if p is not None else frozenset(DEFAULT_FIELDS.get(kind, ()))
            # the quoted names, to skip parsing a payload that holds none of them
            found = (names, tuple(orjson.dumps(n).decode() for n in sorted(names)))
            self._fields[kind] = found
        return found

    def payload(self, kind: str, payload: str | None) -> str | None:
        """A payload's JSON text as this recipient may see it; an event about a personal string
        point (a rule's alert on `last_plate`) has its `value` treated like the point's readings."""
        if not payload:
            return payload
        if kind == ERASED_KIND:
            return self._erasure(payload)
        names, quoted = self._kind(kind)
        named = bool(names) and any(q in payload for q in quoted)
        about_point = bool(self._personal) and '"point"' in payload and '"value"' in payload
        if not (named or about_point):
            return payload
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return payload
        if not isinstance(data, dict):
            return payload
        fields = shaped_fields(names, data, self._personal) if about_point else names
        if not named and fields == names:
            return payload
        p = self.pseudonymiser
        shaped = (
            pseudonymise_payload(data, fields, p.key) if p is not None else withhold_payload(data, fields)
        )
        return orjson.dumps(shaped).decode()

    def _erasure(self, payload: str) -> str:
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError:
            data = {}
        key = self.pseudonymiser.key if self.pseudonymiser is not None else None
        return orjson.dumps(erasure_for(data if isinstance(data, dict) else {}, key)).decode()

    def value(self, point: str, value: Any) -> Any:
        """A reading's value as this recipient may see it: a personal string point's as a pseudonym
        (or null without a key)."""
        if type(value) is not str:
            return value
        info = self._points().get(point)
        if info is None or PRIVACY_RANK[info.privacy] < _PERSONAL_RANK:
            return value
        return self.pseudonymiser.value(value) if self.pseudonymiser is not None else None

    def apply(self, rows: list[Row]) -> list[Row]:
        """The rows as this recipient may see them (new tuples where something was replaced)."""
        personal = self.personal_points()
        if not personal and list(map(_KIND, rows)).count(None) == len(rows):
            return rows  # the common batch: public readings only (counted in C)
        out = rows
        for i, row in enumerate(rows):
            if row[5] is None:
                if row[2] not in personal or type(row[3]) is not str:
                    continue
                p = self.pseudonymiser
                new: Row = (*row[:3], p.value(row[3]) if p is not None else None, *row[4:])
            else:
                payload = self.payload(row[5], row[7])
                if payload is row[7]:
                    continue
                new = (*row[:7], payload)
            if out is rows:
                out = list(rows)
            out[i] = new
        return out
