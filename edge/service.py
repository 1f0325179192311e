"""The process around a Runtime: signals, systemd notifications, config reload.

SIGTERM/SIGINT stop the runtime (drivers stop, the journal flushes) and the process exits.
SIGHUP re-reads the site file (in a thread: a large file does not stall the loop): a file that
does not validate, or that `edge check` refuses (a file it names that cannot be read, a rule pack
that does not compile), is reported and changes nothing. What a reload applies is listed here
(LIVE_KEYS, a plugin's `live_sections`): device changes (changed devices restart, removed ones
stop, new ones start), `site.name`, `privacy.retention`, the `rules` keys its plugin lists in
`live_keys` (not `enabled` nor `packs`). Every other change waits for a
restart: the keys are named in the log, the STATUS line and the status (`restart_pending`), and
what runs, the reported site id and the config hash stay those of the file in force until then.
A reload that fails anyway is logged, READY=1 is sent again and the next SIGHUP is still heard.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import logging
import os
import re
import signal
import ssl
import sys
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from edge.config import ConfigError, Site, load_site
from edge.plugins import Reloadable, registry
from edge.runtime import Runtime, SiteLock, StartError
from edge.sdnotify import Notifier
from edge.state import StateDBError
from edge.store.journal import JournalUnreadable

log = logging.getLogger("edge.service")
#: the core's sections a reload applies whole
LIVE_SECTIONS = ("devices",)
#: the core's sections a reload applies in part -> the keys it applies: a site's name is only shown
#: (status, UI), and each retention pass reads the retention in force; the other keys of these
#: sections wait for a restart (`site.id` and `site.timezone` are read once at start by the sinks,
#: the journal, the rules engine and the KPIs; `privacy.master_key_file` by the privacy component)
LIVE_KEYS: dict[str, tuple[str, ...]] = {"site": ("name",), "privacy": ("retention",)}
#: the core's sections a reload cannot apply; the plugins' sections need a restart too unless their
#: plugin lists them in `live_sections`
RESTART_SECTIONS = ("storage", "web", "upstream", "consumers", "clock")


def status_line(rt: Runtime) -> str:
    """systemd's STATUS=: the devices' states, the journal's position, what waits for a restart."""
    counts: dict[str, int] = {}
    for slot in rt.slots.values():
        counts[str(slot.health.state)] = counts.get(str(slot.health.state), 0) + 1
    devices = ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "no devices"
    pending = f"; restart needed for {', '.join(rt.restart_pending)}" if rt.restart_pending else ""
    return f"{devices}; journal seq {rt.journal.committed_seq}{pending}"


def _dump(items: list[Any]) -> dict[str, Any]:
    return {d.id: d.model_dump(mode="json") for d in items}


#: what `edge check` finds in a loaded site beyond the schema: one located line per problem
SiteCheck = Callable[[Site], list[str]]


def _load_checked(path: str, check: SiteCheck | None) -> Site | list[str]:
    """The site file loaded and checked, or its problems (located lines)."""
    try:
        site = load_site(path)
    except ConfigError as exc:
        return [str(p) for p in exc.problems]
    return (check(site) if check is not None else []) or site


async def reload(rt: Runtime, path: str, check: SiteCheck | None = None) -> list[str]:
    """Apply a changed site file; returns the sections that still need a restart.

    `check`: what `edge check` finds beyond the schema (`serve` is given the same function that
    `edge check` runs): a file with any such problem is refused like one that does not validate."""
    try:
        # reading, parsing and checking a (capped, 1 MiB) file takes up to a second, and the
        # checks read the files it names: not on the event loop
        new = await asyncio.to_thread(_load_checked, path, check)
    except Exception:
        # nothing was applied yet: say so, rather than the failure of a reload half done
        log.exception("reload refused: the site file could not be loaded and checked; nothing changed")
        return []
    if isinstance(new, list):
        log.error("reload refused: the site file has errors; nothing changed\n%s", "\n".join(new))
        return []
    old = rt.site
    plugins = registry()
    live = plugins.live_section_keys()
    partly = plugins.live_keys()
    # rt.site keeps what is in force of everything a reload does not apply: compared with the new
    # file, this is every change still waiting for a restart, those of earlier reloads included
    needs_restart = restart_keys(old, new, plugins.section_keys() - live - set(partly), partly)
    applied = [
        *(
            f"{key}.{name}"
            for key, names in LIVE_KEYS.items()
            for name in names
            if _key(old, key, name) != _key(new, key, name)
        ),
        *sorted(key for key in live if _section(old, key) != _section(new, key)),
        *(
            f"{key}.{name}"
            for key, names in sorted(partly.items())
            for name in names
            if _plugin_key(old, key, name) != _plugin_key(new, key, name)
        ),
    ]
    before, after = _dump(old.devices), _dump(new.devices)
    changed = [i for i in after if i in before and after[i] != before[i]]
    removed = [i for i in before if i not in after]
    added = [i for i in after if i not in before]
    for device_id in removed + changed:
        await rt.stop_device(device_id)
        rt.hub.unregister_device(device_id)
    rt.site.devices = new.devices
    for key, names in LIVE_KEYS.items():  # the live keys of the new file over what is in force
        in_force: BaseModel = getattr(old, key)
        setattr(rt.site, key, in_force.model_copy(update={n: getattr(getattr(new, key), n) for n in names}))
    rt.apply_retention()
    rt.site.sections.update({k: v for k, v in new.sections.items() if k in live})
    for key, names in partly.items():  # the live keys of the new file over what is in force
        if any(_plugin_key(old, key, n) != _plugin_key(new, key, n) for n in names):
            section = _plugin_section(new, key)
            rt.site.sections[key] = _plugin_section(old, key).model_copy(
                update={n: getattr(section, n) for n in names}
            )
    if not needs_restart:  # what runs is now the new file: its hash is the one to report
        rt.site.raw = new.raw
    rt.restart_pending = needs_restart
    for dev in new.devices:
        if dev.id in added + changed and dev.enabled:
            rt.start_device(dev)
    for component in list(rt.components.values()):
        if isinstance(component, Reloadable):
            await component.reload()
    log.info(
        "site file reloaded",
        extra={
            "added": ",".join(added),
            "changed": ",".join(changed),
            "removed": ",".join(removed),
            "applied": ",".join(applied),
            "restart_pending": ",".join(needs_restart),
        },
    )
    if needs_restart:
        log.warning(
            "these settings changed and take effect after a restart: %s; until then the gateway "
            "runs on the ones in force, and reports their site id and config_hash",
            ", ".join(needs_restart),
        )
    return needs_restart


def restart_keys(
    old: Site, new: Site, plugin_sections: set[str], partly: dict[str, tuple[str, ...]] | None = None
) -> list[str]:
    """What differs between the site in force (`old`) and the file (`new`) that only a restart
    applies: whole sections (RESTART_SECTIONS, then `plugin_sections`: those whose plugin does not
    apply them live) and `section.key` for the keys of a partly live section (LIVE_KEYS, and
    `partly`: a plugin's section -> the keys a reload applies) that a reload leaves alone."""
    out = [key for key in RESTART_SECTIONS if _section(old, key) != _section(new, key)]
    for key, names in LIVE_KEYS.items():
        model: BaseModel = getattr(old, key)
        waiting = sorted(set(type(model).model_fields) - set(names))
        out += [f"{key}.{n}" for n in waiting if _key(old, key, n) != _key(new, key, n)]
    out += [key for key in sorted(plugin_sections) if _section(old, key) != _section(new, key)]
    for key, names in sorted((partly or {}).items()):
        waiting = sorted(set(type(_plugin_section(old, key)).model_fields) - set(names))
        out += [f"{key}.{n}" for n in waiting if _plugin_key(old, key, n) != _plugin_key(new, key, n)]
    return out


def _key(site: Site, section: str, name: str) -> Any:
    value = getattr(getattr(site, section), name)
    return value.model_dump(mode="json") if isinstance(value, BaseModel) else value


def _plugin_section(site: Site, key: str) -> BaseModel:
    """A plugin's section as the site gives it, or its defaults where the file leaves it out."""
    value = site.sections.get(key)
    return value if value is not None else registry().section(key).model_validate({})


def _plugin_key(site: Site, section: str, name: str) -> Any:
    value = getattr(_plugin_section(site, section), name)
    return value.model_dump(mode="json") if isinstance(value, BaseModel) else value


def _section(site: Site, key: str) -> Any:
    value = getattr(site, key, None)
    if value is None:
        value = site.sections.get(key)
    if isinstance(value, list):
        return [v.model_dump(mode="json") for v in value]
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return value


# glibc's mallopt parameters: the most malloc arenas the process may have, and the size from
# which an allocation gets pages of its own, returned to the system when it is freed
M_ARENA_MAX = -8
M_MMAP_THRESHOLD = -3
ARENAS = 2
MMAP_FROM = 1024 * 1024


@functools.cache
def _libc() -> Any:
    """The C library's malloc controls, or None where they do not exist (not glibc); looked up
    once, as the trimmer asks every TRIM_EVERY seconds."""
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def lean_heap() -> None:
    """Fewer malloc arenas, and large blocks always on pages of their own, for the service.

    glibc gives each thread that allocates at once an arena of its own (up to 8 per core), each
    keeping freed memory resident; a gateway's threads (the journal writer, the executor's
    workers) take turns, and two arenas serve them with less RSS. And glibc raises its mapping
    threshold to the size of each mapped block freed: after the first password hash (19 MiB,
    freed) every later one came from the heap and stayed resident, 19 MiB more RSS for good after
    one login. A fixed threshold keeps such blocks mapped, and gone once freed."""
    libc = _libc()
    if libc is not None:
        libc.mallopt(M_ARENA_MAX, ARENAS)
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_FROM)


def return_freed_memory() -> bool:
    """Hand every whole free page of the heap back to the system; True when some were.

    glibc returns only the top of the heap by itself: pages freed below a block still in use (the
    parsed site file and the validators built once at start, upstream batches sent, pages the web
    UI built, a burst of events) stay resident until malloc reuses them. malloc_trim(0) takes a
    fraction of a millisecond on a gateway's heap. False, and nothing to do, without glibc."""
    libc = _libc()
    return libc is not None and bool(libc.malloc_trim(0))


#: seconds between two times the running service gives its freed heap back to the system
TRIM_EVERY = 10.0


async def trim_heap_now_and_then() -> None:
    """`return_freed_memory` every TRIM_EVERY seconds, from a task of its own on the event loop:
    never on a request's or a reading's path. The polling and syncing bring part of those pages
    back within seconds, which is why it runs this often (once a minute, RSS was back where it was
    well before the next). Nothing to do without glibc."""
    if _libc() is None:
        return
    while True:
        await asyncio.sleep(TRIM_EVERY)
        returned = return_freed_memory()
        log.debug("freed heap given back to the system", extra={"returned": returned})


#: a certificate in OpenSSL's hashed directory: the subject's hash, a dot, a number
HASH_LINK = re.compile(r"[0-9a-f]{8}\.[0-9]+")


def import_aiohttp_with_ca_lookup_on_demand() -> bool:
    """Import aiohttp with its default TLS contexts finding the system's CA certificates when a
    handshake needs one, instead of holding them all from the start. True when that was done.

    aiohttp makes two default contexts as it is imported (aiohttp.connector), and OpenSSL reads the
    whole CA bundle (about 140 certificates) into each: 2 MB resident for as long as the gateway
    runs, on a site whose upstreams speak plain http and whose web UI has no TLS. With the bundle
    file out of the way for that import, the same contexts look a CA up in the hashed certificate
    directory (the same certificates, one file each, named by subject hash) when a verification asks
    for it: a rule's webhook to an https URL. Done only where that directory holds hash links and
    SSL_CERT_FILE and SSL_CERT_DIR name no bundle and no directory but the system's (a bundle of
    the operator's may hold CAs the directory lacks, and a directory of theirs the bundle's CAs);
    the variable is put back at once, so the contexts the project makes later (an https sink's,
    MQTT over TLS) read the bundle as before."""
    chosen = os.environ.get("SSL_CERT_FILE")
    paths = ssl.get_default_verify_paths()
    if "aiohttp" in sys.modules or not (
        _the_systems(chosen, paths.openssl_cafile)
        and _the_systems(os.environ.get("SSL_CERT_DIR"), paths.openssl_capath)
    ):
        return False
    capath = paths.capath
    try:
        hashed = capath is not None and any(HASH_LINK.fullmatch(name) for name in os.listdir(capath))
    except OSError:
        hashed = False
    if not hashed:
        return False
    os.environ["SSL_CERT_FILE"] = os.devnull  # OpenSSL reads it at each context's default paths
    try:
        import aiohttp.connector  # noqa: F401  (its default contexts are made now)
    finally:
        if chosen is None:
            del os.environ["SSL_CERT_FILE"]
        else:
            os.environ["SSL_CERT_FILE"] = chosen
    return True


def _the_systems(chosen: str | None, default: str) -> bool:
    """An SSL_CERT_* variable unset, or naming the very file or directory OpenSSL uses without it."""
    return chosen is None or os.path.realpath(chosen) == os.path.realpath(default)


#: whether aiohttp's default contexts look CAs up on demand: done here, not in `serve`, because
#: `edge run` and `edge demo` import this module before they read the site file, and validating
#: that imports aiohttp (an http sink's model lives beside the sink)
CA_ON_DEMAND = import_aiohttp_with_ca_lookup_on_demand()


async def serve(
    path: str,
    site: Site | None = None,
    *,
    check: SiteCheck,
    on_ready: Any = None,
    lock: SiteLock | None = None,
) -> int:
    """Run the site until SIGTERM/SIGINT. Returns the process exit code. `check`: what a SIGHUP
    reload runs on the new file beside its validation: what `edge check` runs, so that a reload
    refuses what `edge check` refuses (`edge run` and `edge demo` alike).
    The runtime takes the site's lock before it opens anything (another gateway running the site:
    exit code 1, nothing written); `lock`: that lock, taken already by the caller."""
    lean_heap()
    site = site or load_site(path)
    rt = Runtime(site, lock=lock)
    notifier = Notifier()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    hup = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, hup.set)
    try:
        await rt.start()
    except (StartError, JournalUnreadable, StateDBError) as exc:  # said in full: no traceback
        log.error("start failed: %s", exc)
        with contextlib.suppress(Exception):
            await rt.stop()
        return 1
    except Exception as exc:
        log.error("start failed: %s", exc, exc_info=True)
        with contextlib.suppress(Exception):
            await rt.stop()
        return 1
    return_freed_memory()
    notifier.ready(status_line(rt))
    if on_ready is not None:
        on_ready(rt)

    async def heartbeat() -> None:
        # Sent from the event loop: if the loop hangs, the pings stop and systemd restarts us.
        interval = notifier.watchdog_interval or 5.0
        while True:
            if notifier.watchdog_interval:
                notifier.watchdog()
            notifier.status(status_line(rt))
            await asyncio.sleep(interval)

    beat = asyncio.create_task(heartbeat(), name="sd-heartbeat") if notifier.enabled else None

    async def reloads() -> None:
        while True:
            await hup.wait()
            hup.clear()
            notifier.reloading()
            try:
                await reload(rt, path, check)
            except Exception:
                # one failed reload must not end the task: every later SIGHUP would go unheard
                log.exception(
                    "reload failed; the site runs on with what was applied before the failure; "
                    "fix the site file and send SIGHUP again, or restart the service"
                )
            notifier.ready(status_line(rt))

    reloader = asyncio.create_task(reloads(), name="reloader")
    trimmer = asyncio.create_task(trim_heap_now_and_then(), name="heap-trim")
    await stop.wait()
    log.info("stopping")
    notifier.stopping()
    for task in (beat, reloader, trimmer):
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    await rt.stop()
    log.info("stopped", extra={"committed_seq": rt.journal.committed_seq})
    return 0
