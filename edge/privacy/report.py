"""The record of processing for an auditor (`edge privacy report`): for every point and every event
kind a site can produce, its privacy class; for every upstream sink and pull consumer, whether it
receives it in clear, pseudonymised or not at all; the class's retention; whether it is encrypted
at rest; and how many records of each class the journal holds now.

Recipients are judged by the same `RecordFilter` the sinks and the pull API apply, built from
each recipient's own `include:` and `max_privacy` (read from its config, whatever its type), so the
report cannot say something the gateway does not do. A `pseudonymise:` block is read the same way
where a recipient's config has one.

Event kinds are gathered from what the site declares: the events a device entry lists (`events:`
of a simulated device, `services:` of a BLE device), the kinds the shipped drivers emit on their
own (and those a driver's entry declares through its `declared_events()`, as the demo's kiosk does),
the `alert:` and `event:` actions of the rule packs (read as YAML: the core does not load the
rules engine), and the gateway's own kinds. A rule's message takes the class of what fired it, so
a rule kind is reported at the most private class of the points its trigger matches and of the
event kinds its `event:` triggers match (the class the site declares for a kind, else the kind's
default by `edge.model.event_privacy`, the runtime's own rule); it carries
the `point` and `value` that fired it, so where that is a personal or sensitive string point its
value is reported as each recipient's `RecordShaper` sends it (`shaped_fields`: pseudonymised, or
withheld without a key).
"""

from __future__ import annotations

import fnmatch
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from edge import fmt
from edge.model import PRIVACY_RANK, PointInfo, PointType, Privacy, event_privacy
from edge.privacy.pseudonym import DEFAULT_FIELDS, shaped_fields
from edge.store.records import IncludeConfig, RecordFilter
from edge.units import format_duration
from edge.yamlpos import YamlError
from edge.yamlpos import load as load_yaml
from edge.yamlpos import read_text as read_yaml_text

CLEAR = "clear"
PSEUDONYMISED = "pseudonymised"
#: sent, but its identifying fields are withheld (null): the recipient has no pseudonym key
FIELDS_WITHHELD = "fields_withheld"
WITHHELD = "withheld"
CLASSES = tuple(PRIVACY_RANK)  # public, personal, sensitive
MODBUS_SERVER = "modbus_server"  # the recipient id of the `modbus_server:` section's map

#: kinds the gateway emits on its own, whatever the site; all carry operational data only
GATEWAY_KINDS = (
    "gateway_started",
    "gateway_stopped",
    "device_state",
    "driver_restart",
    "driver_dropped",
    "clock_untrusted",
    "clock_synced",
    "clock_stepped",
    "retention_expired",
    "retention_paused",
    "retention_resumed",
    "snapshots_expired",
    "dead_letters_expired",
    "alert_acks_expired",
    "buffer_drop",
    "journal_restored",
    "journal_seq_conflict",
    "sync_dead_letter",
    "cursor_removed",
    "pseudonym_key_changed",
)
#: kinds a shipped driver emits beyond what its entry lists, with the class each carries
DRIVER_KINDS: dict[str, dict[str, Privacy]] = {
    "camera": {
        "snapshot": Privacy.PERSONAL,
        "blobs_pruned": Privacy.PUBLIC,
        "snapshot_failed": Privacy.PUBLIC,
    },
}
#: kinds the rules engine emits about itself when a site has rule packs
RULE_ENGINE_KINDS = (
    "rule_error",
    "rule_rate_limited",
    "rule_action_failed",
    "rule_actions_cancelled",
    "rule_pack_error",
)

AT_REST_OFF = (
    "no: stored in plaintext (privacy.master_key_file is not set: encryption at rest is not wired yet "
    "for this site)"
)
AT_REST_ON = (
    "personal and sensitive: yes, AES-256-GCM with one data key per resident or plate, wrapped by the "
    "master key in {key} (journal, trend index events, dead letters, the image files of sensitive "
    "cameras; a personal point's numbers and a personal camera's image files stay clear); a data key is "
    "deleted once everything it sealed is past its retention (the site-wide key is kept); public: no"
)


@dataclass
class Recipient:
    """An upstream sink or a pull consumer, as far as privacy goes."""

    id: str
    kind: str  # "sink" or "consumer"
    type: str
    enabled: bool
    max_privacy: Privacy
    include: IncludeConfig
    pseudonymise: Any = None  # the recipient's `pseudonymise:` block, when its config has one
    filter: RecordFilter | None = None
    #: a server's map: the points it serves (None: a sink or consumer, judged by `filter`)
    serves: frozenset[str] | None = None

    def as_dict(self) -> dict[str, Any]:
        out = {
            "id": self.id,
            "kind": self.kind,
            "type": self.type,
            "enabled": self.enabled,
            "max_privacy": str(self.max_privacy),
            "include": self.include.model_dump(),
            "pseudonymise": _pseudonymise_dict(self.pseudonymise),
        }
        if self.serves is not None:
            out["points"] = sorted(self.serves)
        return out


@dataclass
class Item:
    """One point or event kind and what each recipient receives of it."""

    id: str
    source: str
    privacy: Privacy
    receives: dict[str, dict[str, str]] = field(default_factory=dict)
    note: str = ""
    numbers_only: bool = False  # a point whose values are not strings (a personal one's stay clear)


@dataclass
class Report:
    site: str
    config: str
    journal: str
    recipients: list[Recipient]
    points: list[Item]
    events: list[Item]
    retention: dict[str, float | None]
    held: dict[str, int] | None
    held_note: str
    master_key_file: str | None = None  # personal and sensitive records are sealed at rest under it

    def encrypted(self, cls: str | Privacy, numbers_only: bool = False) -> bool:
        """Records of class `cls` are encrypted at rest (`numbers_only`: a point's readings that
        are not strings, which a personal point keeps in clear for its trend)."""
        if self.master_key_file is None or str(cls) == str(Privacy.PUBLIC):
            return False
        return not (numbers_only and str(cls) == str(Privacy.PERSONAL))

    def as_dict(self) -> dict[str, Any]:
        def item(i: Item, key: str) -> dict[str, Any]:
            out: dict[str, Any] = {key: i.id, "source": i.source, "privacy": str(i.privacy)}
            if i.note:
                out["note"] = i.note
            out["retention_s"] = self.retention[str(i.privacy)]
            out["encrypted_at_rest"] = self.encrypted(i.privacy, i.numbers_only)
            out["recipients"] = i.receives
            return out

        return {
            "site": self.site,
            "config": self.config,
            "journal": self.journal,
            "recipients": [r.as_dict() for r in self.recipients],
            "classes": {
                c: {
                    "retention_s": self.retention[c],
                    "encrypted_at_rest": self.encrypted(c),
                    "held": None if self.held is None else self.held.get(c, 0),
                }
                for c in map(str, CLASSES)
            },
            "held_note": self.held_note,
            "points": [item(p, "point") for p in self.points],
            "events": [item(e, "kind") for e in self.events],
        }


def _pseudonymise_dict(block: Any) -> dict[str, Any] | None:
    if block is None:
        return None
    dump = getattr(block, "model_dump", None)
    data = dump() if callable(dump) else dict(block)
    # where the key lives is the recipient's business, not the auditor's
    return {k: v for k, v in data.items() if k not in ("key_file", "key_env")}


def recipients(site: Any) -> list[Recipient]:
    """Every upstream sink and pull consumer of `site`, read through the keys every recipient
    shares (`include`, `max_privacy`, `pseudonymise`), whatever its type."""
    out: list[Recipient] = []
    for sink in site.upstream:
        include = getattr(sink, "include", None)
        out.append(
            Recipient(
                id=sink.id,
                kind="sink",
                type=str(sink.type),
                enabled=bool(getattr(sink, "enabled", True)),
                max_privacy=Privacy(getattr(sink, "max_privacy", Privacy.PERSONAL)),
                include=include if isinstance(include, IncludeConfig) else IncludeConfig(),
                pseudonymise=getattr(sink, "pseudonymise", None),
            )
        )
    for c in site.consumers:
        out.append(
            Recipient(
                id=c.id,
                kind="consumer",
                type="pull",
                enabled=True,
                max_privacy=Privacy(c.max_privacy),
                include=IncludeConfig(),  # the pull API has no include lists: everything up to max_privacy
                pseudonymise=getattr(c, "pseudonymise", None),
            )
        )
    server = site.sections.get("modbus_server") if isinstance(site.sections, dict) else None
    if server is not None:
        # whoever reaches its port reads the map: no account, no pseudonyms, points only
        out.append(
            Recipient(
                id=MODBUS_SERVER,
                kind="server",
                type="modbus",
                enabled=True,
                max_privacy=Privacy(getattr(server, "max_privacy", Privacy.PUBLIC)),
                include=IncludeConfig(),
                serves=frozenset(str(p.point) for p in getattr(server, "points", None) or []),
            )
        )
    return out


def _verdict(
    r: Recipient,
    row: tuple[Any, ...],
    kind: str | None,
    point: PointInfo | None = None,
    example: Mapping[str, Any] | None = None,
    private: frozenset[str] = frozenset(),
) -> dict[str, str]:
    if r.serves is not None:
        return _served(r, point)
    assert r.filter is not None
    if not r.enabled:
        return {"receives": WITHHELD, "why": "disabled"}
    v = r.filter.verdict(row)
    if v == 1:
        return {"receives": WITHHELD, "why": "not in its include lists"}
    if v == 2:
        return {"receives": WITHHELD, "why": f"above its max_privacy {r.max_privacy}"}
    # what RecordShaper does to it where it leaves: pseudonyms with a key, withheld fields without
    fields_for = getattr(r.pseudonymise, "fields_for", None)
    if kind is not None:
        names = frozenset(fields_for(kind) if callable(fields_for) else DEFAULT_FIELDS.get(kind, ()))
        # an event about a personal or sensitive string point: its value, as the sinks judge it
        fields = sorted(shaped_fields(names, example or {}, private))
    else:
        fields = ["value"] if point is not None and _personal_string(point) else []
    if fields and callable(fields_for):
        return {"receives": PSEUDONYMISED, "fields": ", ".join(fields)}
    if fields:
        return {
            "receives": FIELDS_WITHHELD,
            "withheld_fields": ", ".join(fields),
            "why": "no pseudonymise: key, so its identifying fields are withheld (null)",
        }
    return {"receives": CLEAR}


def _served(r: Recipient, point: PointInfo | None) -> dict[str, str]:
    """What a server's map gives of a point (None: an event kind, which no map serves): a point
    above its `max_privacy` reads as having no value."""
    assert r.serves is not None
    if point is None:
        return {"receives": WITHHELD, "why": "a register map serves points only"}
    if point.id not in r.serves:
        return {"receives": WITHHELD, "why": "not in its map"}
    if PRIVACY_RANK[point.privacy] > PRIVACY_RANK[r.max_privacy]:
        return {"receives": WITHHELD, "why": f"above its max_privacy {r.max_privacy}: served as no value"}
    return {"receives": CLEAR}


def _personal_string(p: PointInfo) -> bool:
    return p.type == PointType.STR and PRIVACY_RANK[p.privacy] >= PRIVACY_RANK[Privacy.PERSONAL]


def _point_items(infos: Iterable[PointInfo], rs: list[Recipient]) -> list[Item]:
    out = []
    for p in infos:
        row = (0, 0.0, p.id, None, 0, None, None, None)
        receives = {r.id: _verdict(r, row, None, p) for r in rs}
        out.append(Item(p.id, p.device, p.privacy, receives, numbers_only=p.type != PointType.STR))
    out.sort(key=lambda i: (-PRIVACY_RANK[i.privacy], i.id))
    return out


def _device_kinds(device: Any, points: Mapping[str, PointInfo]) -> list[tuple[str, Privacy, str]]:
    """(kind, class, note) of the events a device entry declares or its driver emits."""
    out: list[tuple[str, Privacy, str]] = []
    for ev in getattr(device, "events", None) or []:
        kind = getattr(ev, "kind", None)
        if not isinstance(kind, str):
            continue
        payload = dict(getattr(ev, "payload", None) or {})
        # a generated payload (a measurement, a passage) carries the entry's `privacy:` as its class
        if getattr(ev, "generator", "generic") != "generic" and getattr(ev, "privacy", None):
            payload["privacy"] = str(ev.privacy)
        out.append((kind, event_privacy(kind, payload, points), ""))
    services = getattr(device, "services", None)
    if isinstance(services, list) and services:
        cls = Privacy(getattr(device, "privacy", None) or Privacy.SENSITIVE)
        out.extend((str(s), cls, "a measurement of the device's user") for s in services)
    # a driver that emits kinds of its own without an entry listing them declares them (the
    # demo's kiosk): kind -> the payload fields that set its class
    declared = getattr(device, "declared_events", None)
    if callable(declared):
        out.extend(
            (str(kind), event_privacy(str(kind), dict(p), points), "") for kind, p in declared().items()
        )
    for kind, cls in DRIVER_KINDS.get(str(getattr(device, "driver", "")), {}).items():
        if kind == "snapshot" and getattr(device, "privacy", None) == Privacy.SENSITIVE:
            out.append((kind, Privacy.SENSITIVE, "its image files are sealed at rest (privacy: sensitive)"))
            continue
        out.append((kind, cls, ""))
    return out


def _pack_actions(pack: Any) -> Iterable[tuple[dict[str, Any], str, dict[str, Any]]]:
    """(rule, kind, payload) of every alert and event action of a parsed rule pack."""
    rules = pack.get("rules") if isinstance(pack, dict) else None
    for rule in rules if isinstance(rules, list) else []:
        if not isinstance(rule, dict):
            continue
        for action in rule.get("then") or []:
            if not isinstance(action, dict):
                continue
            if "alert" in action:
                yield rule, "alert", {}
            spec = action.get("event")
            if isinstance(spec, dict) and isinstance(spec.get("kind"), str):
                payload = spec.get("payload")
                yield rule, spec["kind"], payload if isinstance(payload, dict) else {}


def example_payload(matched: Iterable[PointInfo]) -> dict[str, Any]:
    """What a rule's alert or event carries about the point that fired it (`point`, `value`), for
    the one among `matched` (its trigger's points) whose value says most: a private string
    point's (a plate), else a private point's, else any; {} when it matches none."""
    ranked = sorted(
        matched,
        key=lambda p: (p.privacy == Privacy.PUBLIC, p.type != PointType.STR, p.id),
    )
    if not ranked:
        return {}
    p = ranked[0]
    return {"point": p.id, "value": "text" if p.type == PointType.STR else 0}


def _trigger_class(
    rule: Mapping[str, Any],
    payload: Mapping[str, Any],
    points: Mapping[str, PointInfo],
    events: Mapping[str, Privacy] | None = None,
) -> tuple[Privacy, dict[str, Any]]:
    """The most private class among the named privacy of the payload, the points the rule's
    trigger matches or its conditions name (a message may quote any of them) and the event kinds
    its `event:` triggers match, and the payload its message carries about the point that fires it
    (`example_payload`). `events`: the class of each event kind the site declares; a kind it does
    not declare has its default class (`edge.model.event_privacy`, as the runtime judges it)."""
    when = rule.get("when")
    patterns: list[str] = []
    kinds: list[str] = []
    for entry in when if isinstance(when, list) else [when]:
        if isinstance(entry, str):
            patterns.append(entry)
        elif isinstance(entry, dict):
            for key, v in entry.items():
                if isinstance(v, str):
                    (kinds if key == "event" else patterns).append(v)
    text = " ".join(str(rule.get(k) or "") for k in ("if", "clear_if"))
    ranks = [PRIVACY_RANK[event_privacy("", dict(payload), points)]]
    for pattern in kinds:
        matched = [cls for kind, cls in (events or {}).items() if fnmatch.fnmatchcase(kind, pattern)]
        ranks.extend(PRIVACY_RANK[c] for c in matched or [event_privacy(pattern, {}, points)])
    fired_by = []
    for pid, info in points.items():
        fires = any(fnmatch.fnmatchcase(pid, pat) for pat in patterns)
        if fires:
            fired_by.append(info)
        if fires or pid in text:
            ranks.append(PRIVACY_RANK[info.privacy])
    return CLASSES[max(ranks)], example_payload(fired_by)


def _rule_kinds(
    site: Any, points: Mapping[str, PointInfo], events: Mapping[str, Privacy] | None = None
) -> tuple[list[tuple[str, Privacy, str, str, dict[str, Any]]], list[str]]:
    """(kind, class, source, note, example payload) of the rule packs' actions, and problems
    reading a pack. `events`: the class of each event kind the site declares (`_trigger_class`)."""
    section = site.raw.get("rules") if isinstance(site.raw, dict) else None
    if not isinstance(section, dict) or section.get("enabled") is False:
        return [], []
    out: list[tuple[str, Privacy, str, str, dict[str, Any]]] = []
    problems: list[str] = []
    for name in section.get("packs") or []:
        path = Path(str(name))
        if not path.is_absolute() and not path.exists():
            path = Path(site.source).parent / path
        try:
            pack, _ = load_yaml(read_yaml_text(path), str(path))
        except (OSError, YamlError, UnicodeDecodeError) as exc:
            problems.append(f"{path}: rule pack not read: {exc}")
            continue
        for rule, kind, payload in _pack_actions(pack):
            note = f"rule {rule.get('id', '?')}: the class of what fires it"
            cls, example = _trigger_class(rule, payload, points, events)
            out.append((kind, cls, f"rules ({name})", note, {**payload, **example}))
    for kind in RULE_ENGINE_KINDS:
        out.append((kind, Privacy.PUBLIC, "rules", "", {}))
    return out, problems


def held_counts(journal_path: str) -> tuple[dict[str, int] | None, str]:
    """Rows per class in the journal now, read-only, with a note; None when it cannot be read."""
    from edge.store.journal import Journal, JournalUnreadable

    if not Path(journal_path).exists():
        return None, "no journal yet (the site has not run): nothing is held"
    try:
        j = Journal.open_readonly(journal_path)
    except JournalUnreadable as exc:
        return None, str(exc)
    try:
        counts = j.count_by_class()
    except sqlite3.OperationalError as exc:
        return (
            None,
            f"{journal_path}: counts per class need journal schema v3 ({exc}); start the gateway once",
        )
    finally:
        j.close_sync()
    return {str(c): counts.get(r, 0) for c, r in PRIVACY_RANK.items()}, ""


def build(site: Any) -> Report:
    """The record of processing for a validated site (`edge.config.Site`)."""
    infos = site.point_infos()
    points = {p.id: p for p in infos}
    rs = recipients(site)
    for r in rs:
        if r.serves is None:
            r.filter = RecordFilter(r.include, r.max_privacy, lambda: points)

    kinds: dict[tuple[str, str], tuple[Privacy, str]] = {}
    private = frozenset(p.id for p in infos if p.privacy != Privacy.PUBLIC)
    # per kind and source, a payload that names someone by its value, when one of its actions does
    examples: dict[tuple[str, str], dict[str, Any]] = {}

    def add(
        kind: str, cls: Privacy, source: str, note: str = "", example: dict[str, Any] | None = None
    ) -> None:
        key = (kind, source)
        old = kinds.get(key)
        if old is None or PRIVACY_RANK[cls] > PRIVACY_RANK[old[0]]:
            kinds[key] = (cls, note)
        if example and (key not in examples or shaped_fields(frozenset(), example, private)):
            examples[key] = example

    for d in site.devices:
        if getattr(d, "enabled", True):
            for kind, cls, note in _device_kinds(d, points):
                add(kind, cls, d.id, note)
    for kind in GATEWAY_KINDS:
        add(kind, Privacy.PUBLIC, "gateway")
    # a rule triggered by an event takes that event's class: of the kinds declared so far, then
    # again with the rules' own kinds (a rule on another rule's alert), until no class rises
    event_classes: dict[str, Privacy] = {}
    problems: list[str] = []
    for _ in range(4):
        seen: dict[str, Privacy] = {}
        for (kind, _source), (cls, _note) in kinds.items():
            if kind not in seen or PRIVACY_RANK[cls] > PRIVACY_RANK[seen[kind]]:
                seen[kind] = cls
        if seen == event_classes:
            break
        event_classes = seen
        rule_kinds, problems = _rule_kinds(site, points, event_classes)
        for kind, cls, source, note, example in rule_kinds:
            add(kind, cls, source, note, example)
    if site.sections.get("kpi") is not None:
        add("kpi_daily", Privacy.PUBLIC, "kpi", "the day's figures per device: counts and shares")
        add("alert", Privacy.PUBLIC, "kpi", "a day below its targets")
    # an acknowledgement names its user, and its comment may quote the alert: personal, or the
    # class of the most private alert it may acknowledge
    alerts = [cls for (kind, _), (cls, _) in kinds.items() if kind == "alert"]
    ack = max([Privacy.PERSONAL, *alerts], key=PRIVACY_RANK.__getitem__)
    add("alert_ack", ack, "gateway", "who acknowledged an alert (`user`), when, the comment")
    if site.privacy.master_key_file is not None:
        add(
            "data_keys_expired",
            Privacy.PUBLIC,
            "gateway",
            "how many data keys expired with their data: a count",
        )
    writable = [p for p in infos if p.writable]
    if writable:
        top = max((p.privacy for p in writable), key=PRIVACY_RANK.__getitem__)
        add("command", top, "gateway", "a write: the class of the point written")

    events = []
    for (kind, source), (cls, note) in kinds.items():
        row = (0, 0.0, source, None, None, kind, "info", orjson.dumps({"privacy": str(cls)}).decode())
        example = examples.get((kind, source), {})
        receives = {r.id: _verdict(r, row, kind, example=example, private=private) for r in rs}
        events.append(Item(kind, source, cls, receives, note))
    events.sort(key=lambda i: (-PRIVACY_RANK[i.privacy], i.id, i.source))

    retention = {str(c): site.privacy.retention_of(c, site.storage.keep_history) for c in CLASSES}
    held, note = held_counts(site.storage.path)
    if problems:
        note = "; ".join([note, *problems]) if note else "; ".join(problems)
    return Report(
        site=site.site.id,
        config=str(site.source),
        journal=site.storage.path,
        recipients=rs,
        points=_point_items(infos, rs),
        events=events,
        retention=retention,
        held=held,
        held_note=note,
        master_key_file=site.privacy.master_key_file,
    )


# ---------------------------------------------------------------- text
SHORT = {CLEAR: "clear", PSEUDONYMISED: "pseudonym", FIELDS_WITHHELD: "no-ids", WITHHELD: "withheld"}


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def render_text(report: Report) -> str:
    """The report as a person reads it: classes first, then points and event kinds grouped by
    class, one column per recipient."""
    lines = [f"Record of processing: site {report.site} ({report.config})", ""]
    lines.append("Recipients:")
    if not report.recipients:
        lines.append("  none: nothing leaves the site")
    for r in report.recipients:
        ps = _pseudonymise_dict(r.pseudonymise)
        how = f"pseudonymise {ps}" if ps is not None else "no pseudonymise: (identifying fields withheld)"
        if r.serves is not None:
            how = f"serves {fmt.count(len(r.serves), 'point')} of its map to whoever reaches its port, no pseudonyms"
        state = "" if r.enabled else ", disabled"
        lines.append(f"  {r.id}: {r.kind} ({r.type}{state}), max_privacy {r.max_privacy}, {how}")
    lines.append("")
    lines.append("Classes:")
    rows = [["class", "retention", "encrypted at rest", "records held now"]]
    for c in map(str, CLASSES):
        kept = report.retention[c]
        held = "-" if report.held is None else str(report.held.get(c, 0))
        rows.append(
            [
                c,
                "until the byte cap" if kept is None else format_duration(kept),
                "yes" if report.encrypted(c) else "no",
                held,
            ]
        )
    lines += ["  " + line for line in _table(rows)]
    at_rest = AT_REST_OFF if report.master_key_file is None else AT_REST_ON.format(key=report.master_key_file)
    lines.append(f"  encrypted at rest: {at_rest}")
    if report.held_note:
        lines.append(f"  note: {report.held_note}")
    ids = [r.id for r in report.recipients]
    for title, items in (("Points", report.points), ("Event kinds", report.events)):
        for c in reversed(CLASSES):
            group = [i for i in items if i.privacy == c]
            if not group:
                continue
            lines += ["", f"{title}: {c}"]
            rows = [["id" if title == "Points" else "kind", "source", *ids]]
            for i in group:
                rows.append([i.id, i.source, *(SHORT[i.receives[r]["receives"]] for r in ids)])
            lines += ["  " + line for line in _table(rows)]
    lines += [
        "",
        "clear: sent as stored; no-ids: sent with its identifying fields withheld (null), the "
        "recipient has no pseudonym key (`--json`: fields_withheld, withheld_fields); pseudonym: identifying fields replaced by the "
        "recipient's keyed pseudonym; withheld: kept on site (above the recipient's max_privacy, outside its include "
        "lists, or the recipient is disabled). `--json` says why for each.",
    ]
    return "\n".join(lines) + "\n"
