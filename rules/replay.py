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

A dry run judges each record at the class the journal stored it with (its `privacy` column: what
the record was when it came, and what sealed it), or at its point's class now when that is
higher: a sealed record's content says nothing of its class once it no longer opens (erased). On a
site that seals personal and sensitive records at rest, a dry run's process reads the journal as
stored (`StoredJournal`) and holds no key: the records its rules can read (an event of a kind a
trigger names, a reading of a point a rule watches or reads) are opened by an `Opener`, a page at a
time, where the site's keys are (`rules.dry_run_worker`: the gateway); so the rule sees what the
live engine saw. Sealed records no rule reads stay sealed, as a reader without the keys sees them.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, NamedTuple

from edge import paths
from edge.model import PRIVACY_RANK, QUALITY_BY_NAME, Event, Privacy, Reading, event_privacy
from edge.store.reader import JournalQueries, Row
from edge.store.rows import SEALED_PAYLOAD, row_to_record
from rules.backfill import DEFAULT_MAX_ROWS, History, Opener, read_history, wants_of
from rules.engine import Engine, Firing
from rules.model import CompiledRule, firing_privacy, reads_privacy

PAGE = 5000
MAX_NAMED = 20  # points or event kinds named per class in a dry run's `inputs`
CLASS_OF_RANK = {rank: klass for klass, rank in PRIVACY_RANK.items()}


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
        self._reading: dict[str, bool] = {}  # point id or "event:kind" -> a rule reads its content
        # the highest class the journal stored a trigger's records with, above public: a point's
        # id, or "event:kind\0source" (`_trigger`), for the firings they bring, timers' included
        self._stored: dict[str, Privacy] = {}
        if start is not None:
            self._start(start)

    def _start(self, ts: float) -> None:
        self.engine.now = ts
        for cr in self._rules:
            self.engine.add(cr, ts)
        self._started = True

    def feed(self, records: Iterable[Reading | Event]) -> list[dict[str, Any]]:
        return self.feed_stored((rec, None) for rec in records)

    def feed_stored(self, records: Iterable[tuple[Reading | Event, Privacy | None]]) -> list[dict[str, Any]]:
        """Feed records, each with the class the journal stored it with (None: not known; then
        its point's class, or the class its payload names, as `feed` judges it)."""
        new: list[dict[str, Any]] = []
        public = Privacy.PUBLIC
        for rec, stored in records:
            if not self._started:
                self._start(rec.ts)
            self.records += 1
            if stored is not None and stored != public:
                self._remember(rec, stored)
            self._note_input(rec, stored)
            new.extend(self._dict(f) for f in self.engine.process((rec,)))
        self.firings.extend(new)
        return new

    def _remember(self, rec: Reading | Event, stored: Privacy) -> None:
        key = rec.point if isinstance(rec, Reading) else f"event:{rec.kind}\0{rec.source}"
        known = self._stored.get(key)
        if known is None or PRIVACY_RANK[stored] > PRIVACY_RANK[known]:
            self._stored[key] = stored

    def reads_record(self, name: str, event: bool) -> bool:
        """Whether a rule of the replay can read what a record holds: an event (`event`) of kind
        `name` its trigger names; a reading of point `name` it watches, waits for (`no_data`) or
        reads (`p()`, `age()`, a window; any point, for a rule that computes which). Judged once
        per point or kind."""
        key = f"event:{name}" if event else name
        known = self._reading.get(key)
        if known is None:
            rules = self.engine.rules.values()
            if event:
                known = any(p.match(name) for rr in rules for p in rr.events)
            else:
                known = any(cr.reads_any_point or name in cr.reads for cr in self._rules) or any(
                    rx.match(name) for rr in rules for rx in (*rr.points, *(rx for rx, _ in rr.no_data))
                )
            self._reading[key] = known
        return known

    def _note_input(self, rec: Reading | Event, stored: Privacy | None = None) -> None:
        """Count `rec` in `inputs` when a rule's trigger takes it (a good reading of a point it
        watches or waits for, an event of a kind it names), at the class the journal `stored` it
        with or the one judged now, whichever is higher. Whether a record is routed is judged once
        per point or kind; an event's class (its payload may name one) once per event routed."""
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
        if stored is not None and PRIVACY_RANK[stored] > PRIVACY_RANK[klass]:
            klass = stored
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
        d = firing_dict(f, self._points, self._reads.get(f.rule.id))
        if self._stored:
            stored = self._stored.get(_trigger(f.args))
            if stored is not None and PRIVACY_RANK[stored] > PRIVACY_RANK[Privacy(d["privacy"])]:
                d["privacy"] = str(stored)
        return d

    @property
    def evaluated(self) -> int:
        return self.engine.evaluations


def _trigger(args: tuple[Any, ...]) -> str:
    """The `Replay._stored` key of a firing's trigger: an event's kind and source, else its point."""
    if isinstance(args[10], dict):  # an event's (see `rules.model.firing_privacy`)
        return f"event:{args[7]}\0{args[8]}"
    return str(args[2] or "")


class StoredJournal(JournalQueries):
    """The journal file at `path`, read-only, its rows as stored: a sealed value or payload stays
    the envelope (bytes) it is in the file, for whoever holds the site's keys to open (`Opener`).
    A dry run's process reads the journal so, and holds no key."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._read = sqlite3.connect(paths.sqlite_uri(path), uri=True, check_same_thread=False, timeout=30)
        self._read.execute("PRAGMA busy_timeout=30000")
        self._read_lock = threading.Lock()

    def close(self) -> None:
        if self._read is not None:
            self._read.close()
            self._read = None


def classed_rows(journal: JournalQueries, after: int, limit: int) -> list[Row]:
    """`read_rows(after, limit)`, each row with the class the journal stored it with
    (PRIVACY_RANK) last."""
    return journal.read_classed_rows(after, limit)


def first_seq_at(journal: JournalQueries, since: float) -> int | None:
    """The first journal seq whose record has ts >= since (None: no such record)."""
    return journal.first_seq_since(since)


def journal_records(
    journal: JournalQueries, since: float, until: float | None = None, first: int | None = None
) -> Iterator[Reading | Event]:
    """Committed journal records with ts >= since, in seq order, paged (from seq `first` when the
    caller already looked it up)."""
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


def stored_records(
    journal: JournalQueries,
    since: float,
    until: float,
    first: int | None,
    reads: Callable[[str, bool], bool],
    opener: Opener | None = None,
) -> Iterator[tuple[Reading | Event, Privacy]]:
    """The records of `journal_records(journal, since, until, first)`, each with the class the
    journal stored it with. A sealed value or payload (`StoredJournal`) is opened by `opener` where
    `reads(point or kind, is an event)` says a rule can read it, a page at a time; any other reads
    as it does without the keys (null, `{"sealed": true}`)."""
    if first is None:
        return
    after = first - 1
    while True:
        rows = classed_rows(journal, after, PAGE)
        if not rows:
            return
        rows = _opened(rows, since, until, reads, opener)
        for r in rows:
            ts = r[1]
            if ts < since:
                continue
            if ts > until:
                return
            yield record_from_dict(row_to_record(r[:8])), CLASS_OF_RANK.get(r[8], Privacy.SENSITIVE)
        after = rows[-1][0]


def _opened(
    rows: list[Row], since: float, until: float, reads: Callable[[str, bool], bool], opener: Opener | None
) -> list[Row]:
    """A page of `classed_rows` with its sealed cells (bytes: a reading's value, an event's payload)
    opened where a rule reads them and the record is in [since, until], in one `opener` call; the
    others as a reader without the keys sees them."""
    at = [i for i, r in enumerate(rows) if type(r[3]) is bytes or type(r[7]) is bytes]
    if not at:
        return rows
    rows = list(rows)
    asked: list[tuple[str, float, str, bytes]] = []
    cells: list[tuple[int, int]] = []
    for i in at:
        row = list(rows[i])
        ts, point, kind = row[1], row[2], row[5]
        wanted = opener is not None and since <= ts <= until and reads(kind or point, kind is not None)
        for col, column, closed in ((3, "value", None), (7, "payload", SEALED_PAYLOAD)):
            if type(row[col]) is not bytes:
                continue
            if wanted:
                asked.append((column, ts, point, row[col]))
                cells.append((i, col))
            else:
                row[col] = closed
        rows[i] = tuple(row)
    if asked and opener is not None:
        for (i, col), cell in zip(cells, opener(asked), strict=True):
            row = list(rows[i])
            row[col] = cell
            rows[i] = tuple(row)
    return rows


def prefill(
    rp: Replay,
    journal: JournalQueries,
    since: float,
    upto_seq: int,
    max_rows: int = DEFAULT_MAX_ROWS,
    opener: Opener | None = None,
) -> History:
    """Fill `rp`'s windows with the journal's readings older than `since` up to seq `upto_seq`
    (the last of them); evaluates nothing (blocking: run it in a thread). `opener` opens sealed
    values (`StoredJournal`)."""
    wants = wants_of(rp.engine.rules.values())
    history = read_history(journal, wants, since, upto_seq, max_rows, before_now=True, opener=opener)
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
    opener: Opener | None = None,
) -> dict[str, Any]:
    """The rule over the journal's records in [since, until], its windows pre-filled from the
    readings before `since` (at most `max_rows` journal rows; 0: start empty).

    Each firing carries `privacy`, the class of what it read, judged with `point_classes` (point
    id -> class, the hub's; a point not in it counts as public, so a caller without it judges
    again with the point classes it has, from the firing's `point`), and `point`, the trigger's
    point id; `inputs` and `inputs_named`, what the rule's triggers took (`Replay.inputs`). A
    record counts at the class the journal stored it with where that is higher. On a
    `StoredJournal`, `opener` opens the sealed records the rule reads."""
    classes = {pid: PointClass(Privacy(c)) for pid, c in (point_classes or {}).items()}
    rp = Replay([rule], tz, start=since, points=classes)
    first = first_seq_at(journal, since)
    history = None
    if max_rows > 0:
        # by ts, not by seq: records journaled late (or start-up events) mix the two orders
        upto = journal.last_seq_before(since) or 0
        history = prefill(rp, journal, since, upto, max_rows, opener)
    rp.feed_stored(stored_records(journal, since, until, first, rp.reads_record, opener))
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
