"""Dry runs and offline tests: rules evaluated over recorded records, actions never executed.

Both the dry-run API (the journal's last N hours) and `edge rules test` (a JSONL file in the
`edge buffer tail --json` shape) feed records to a fresh `Engine` in timestamp order and report
each firing as `{rule, ts, kind, message}`; timers run on the records' time, so a `for: 1m` in a
replay fires where it fired live, except where the gateway was stopped or its wall clock stepped:
the live engine then sends one repeat for those it missed, stamped with the time it runs, and
moves its `for:`, repeat and `no_data` timers with a step, which a replay, knowing only the
records' time, cannot tell.

A dry run's firings quote journaled data, so each carries the class of what it read
(`rules.model.firing_privacy`: its trigger record and the points the rule reads) and the trigger's
point id; the API withholds message and key of firings above the caller's class.

A dry run also says what its rule was fed (`inputs`: the records routed to it, per class, and
the points and event kinds above public among them), whatever the rule's condition made of them:
the API refuses a caller whose class is below one of them, and audits the read otherwise.

A dry run starts where the live engine was, not empty: its windows are first filled with the
journal's readings just before the range (`rules.backfill`, the same read as after a restart), so
`avg(p, 10m)` in the range's first 10 minutes means what it meant live. The pre-fill evaluates
nothing and reports nothing.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from edge.model import QUALITY_BY_NAME, Event, Privacy, Reading, event_privacy
from rules.backfill import DEFAULT_MAX_ROWS, History, read_history, wants_of
from rules.engine import Engine, Firing
from rules.model import CompiledRule, firing_privacy, reads_privacy

if TYPE_CHECKING:
    from edge.store.reader import JournalQueries

PAGE = 5000
MAX_NAMED = 20  # points or event kinds named per class in a dry run's `inputs`


def record_from_dict(d: dict[str, Any]) -> Reading | Event:
    """A record in the pull-API / `buffer tail --json` shape; ValueError says what is missing."""
    try:
        ts = float(d["ts"])
        if d.get("type", "reading") == "reading":
            q = d.get("quality", "good")
            quality = QUALITY_BY_NAME[q] if isinstance(q, str) else int(q)
            return Reading(ts, str(d["point"]), d.get("value"), quality)
        payload = d.get("payload") or {}
        return Event(str(d["kind"]), str(d.get("source", "")), str(d.get("severity", "info")), payload, ts)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(
            f"not a record ({exc}); expected {{ts, type: reading, point, value, quality}} "
            "or {ts, type: event, kind, source, severity, payload}"
        ) from None


class PointClass(NamedTuple):
    """A point's class where only the class is known (what `firing_privacy` reads of a point)."""

    privacy: Privacy


def firing_dict(
    f: Firing, points: Mapping[str, Any] | None = None, read: Privacy | None = None
) -> dict[str, Any]:
    """A firing as replays report it; `points` (id -> PointInfo or PointClass) gives its class,
    `read` the rule's `reads_privacy` when the caller keeps it."""
    kind = "fired" if f.kind == "repeat" else f.kind
    return {
        "rule": f.rule.id,
        "key": f.key,
        "ts": f.ts,
        "kind": kind,
        "message": f.message,
        "privacy": str(firing_privacy(f.rule.compiled, f.args, points or {}, read)),
        "point": str(f.args[2] or ""),
    }


class Replay:
    """A fresh engine over some rules; feed records, collect firings."""

    def __init__(
        self,
        rules: Iterable[CompiledRule],
        tz: dt.tzinfo,
        start: float | None = None,
        points: Mapping[str, Any] | None = None,
    ) -> None:
        self.engine = Engine(tz)
        self._rules = list(rules)
        self._points = points or {}
        # what each rule reads is fixed for the replay: judged once, not per firing
        self._reads = {cr.rule.id: reads_privacy(cr, self._points) for cr in self._rules}
        self._started = False
        self.firings: list[dict[str, Any]] = []
        self.records = 0
        # what the rules were fed, whatever their conditions made of it: records per class, and
        # the points and event kinds above public (a dry run's caller may not be allowed them)
        self.inputs: Counter[str] = Counter()
        self.inputs_named: dict[str, set[str]] = {}
        self._routed: dict[str, bool] = {}  # point id or "event:kind" -> fed to a rule
        if start is not None:
            self._start(start)

    def _start(self, ts: float) -> None:
        self.engine.now = ts
        for cr in self._rules:
            self.engine.add(cr, ts)
        self._started = True

    def feed(self, records: Iterable[Reading | Event]) -> list[dict[str, Any]]:
        new: list[dict[str, Any]] = []
        for rec in records:
            if not self._started:
                self._start(rec.ts)
            self.records += 1
            self._note_input(rec)
            new.extend(self._dict(f) for f in self.engine.process((rec,)))
        self.firings.extend(new)
        return new

    def _note_input(self, rec: Reading | Event) -> None:
        """Count `rec` in `inputs` when a rule's trigger takes it (a good reading of a point it
        watches or waits for, an event of a kind it names). Whether a record is routed is judged once per point
        or kind; an event's class (its payload may name one) once per event routed."""
        if isinstance(rec, Reading):
            if rec.quality:
                return  # bad samples reach no rule
            name = rec.point
            routed = self._routed.get(name)
            if routed is None:
                rules = self.engine.rules.values()
                watched = [rx for rr in rules for rx in (*rr.points, *(rx for rx, _ in rr.no_data))]
                routed = self._routed[name] = any(rx.match(name) for rx in watched)
            if not routed:
                return
            info = self._points.get(name)
            klass = Privacy(info.privacy) if info is not None else Privacy.PUBLIC
        else:
            key = f"event:{rec.kind}"
            routed = self._routed.get(key)
            if routed is None:
                rules = self.engine.rules.values()
                routed = self._routed[key] = any(p.match(rec.kind) for rr in rules for p in rr.events)
            if not routed:
                return
            klass = event_privacy(rec.kind, rec.payload, self._points)
            name = key
        self.inputs[klass] += 1
        if klass != Privacy.PUBLIC:
            named = self.inputs_named.setdefault(str(klass), set())
            if len(named) < MAX_NAMED:
                named.add(name)

    def finish(self, until: float | None = None) -> list[dict[str, Any]]:
        """Run timers due up to `until` (default: the last record's time)."""
        due = self.engine.advance(until if until is not None else self.engine.now)
        new = [self._dict(f) for f in due]
        self.firings.extend(new)
        return new

    def _dict(self, f: Firing) -> dict[str, Any]:
        return firing_dict(f, self._points, self._reads.get(f.rule.id))

    @property
    def evaluated(self) -> int:
        return self.engine.evaluations


def first_seq_at(journal: JournalQueries, since: float) -> int | None:
    """The first journal seq whose record has ts >= since (None: no such record)."""
    return journal.first_seq_since(since)


def journal_records(
    journal: JournalQueries, since: float, until: float | None = None, first: int | None = None
) -> Iterator[Reading | Event]:
    """Committed journal records with ts >= since, in seq order, paged (from seq `first` when the
    caller already looked it up)."""
    from edge.store.journal import row_to_record

    first = first_seq_at(journal, since) if first is None else first
    if first is None:
        return
    after = first - 1
    while True:
        rows = journal.read_rows(after, PAGE)
        if not rows:
            return
        for r in rows:
            d = row_to_record(r)
            if d["ts"] < since:
                continue
            if until is not None and d["ts"] > until:
                return
            yield record_from_dict(d)
        after = rows[-1][0]


def prefill(
    rp: Replay, journal: JournalQueries, since: float, upto_seq: int, max_rows: int = DEFAULT_MAX_ROWS
) -> History:
    """Fill `rp`'s windows with the journal's readings older than `since` up to seq `upto_seq`
    (the last of them); evaluates nothing (blocking: run it in a thread)."""
    wants = wants_of(rp.engine.rules.values())
    history = read_history(journal, wants, since, upto_seq, max_rows, before_now=True)
    rp.engine.fill_windows(history.windows)
    return history


def dry_run(
    journal: JournalQueries,
    rule: CompiledRule,
    tz: dt.tzinfo,
    since: float,
    until: float,
    max_rows: int = DEFAULT_MAX_ROWS,
    *,
    point_classes: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The rule over the journal's records in [since, until], its windows pre-filled from the
    readings before `since` (at most `max_rows` journal rows; 0: start empty).

    Each firing carries `privacy`, the class of what it read, judged with `point_classes` (point
    id -> class, the hub's; a point not in it counts as public, so a caller without it judges
    again with the point classes it has, from the firing's `point`), and `point`, the trigger's
    point id; `inputs` and `inputs_named`, what the rule's triggers took (`Replay.inputs`)."""
    classes = {pid: PointClass(Privacy(c)) for pid, c in (point_classes or {}).items()}
    rp = Replay([rule], tz, start=since, points=classes)
    first = first_seq_at(journal, since)
    history = None
    if max_rows > 0:
        # by ts, not by seq: records journaled late (or start-up events) mix the two orders
        upto = journal.last_seq_before(since) or 0
        history = prefill(rp, journal, since, upto, max_rows)
    rp.feed(journal_records(journal, since, until, first))
    rp.finish(until)
    return {
        "firings": [
            {k: f[k] for k in ("ts", "kind", "message", "key", "privacy", "point")} for f in rp.firings
        ],
        "evaluated": rp.evaluated,
        "inputs": {str(k): n for k, n in rp.inputs.items()},
        "inputs_named": {k: sorted(v) for k, v in rp.inputs_named.items()},
        "prefill": history.summary() if history is not None else None,
    }
