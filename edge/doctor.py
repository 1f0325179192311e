"""`edge doctor`: what on this host stands between a site file and a gateway that works, each
problem with the command that fixes it.

It looks at the host, not at the running gateway (`edge status` does that): the site file and
whether the service user may read it, the device nodes the site names (serial ports, V4L2
cameras) and whether the service user may open them, the user's membership of dialout / video /
bluetooth (the groups the service's unit gives it count: SupplementaryGroups=), BlueZ for a site
with BLE devices, the space on the journal's filesystem, whether the service user may read and
write the data files (journal, state DB, trend index, snapshots) or create their missing folder,
whether those databases pass SQLite's quick_check, the clock's sync, the ports the site listens
on, the modes of the secret files the site names, and whether the site's master key opens its
keys.db (read-only). It changes nothing.

It knows the site file's devices by their entries (`driver:`, strings naming `/dev/...`), not by
importing their drivers: a check of the host must work when a driver's extra is missing.
"""

from __future__ import annotations

import argparse
import errno
import grp
import json
import os
import pwd
import shutil
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edge import fmt
from edge.cli import Subcommands, add_command, arg

#: the account of deploy/systemd/community-edge.service
SERVICE_USER = "community-edge"
#: severities, mildest first; the exit code is the worst one's
OK, INFO, WARNING, ERROR = "ok", "info", "warning", "error"
EXIT = {OK: 0, INFO: 0, WARNING: 1, ERROR: 2}
#: a key ending in `_file` whose name says it holds a secret (the others: a CA, a pack)
SECRET_WORDS = ("token", "secret", "password", "key", "hmac", "credential")


@dataclass(frozen=True)
class Finding:
    check: str  # what was looked at: site, device, group, bluez, disk, data, clock, port, secret, keys
    severity: str
    message: str
    fix: str = ""  # the command (or edit) that fixes it


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    groups: frozenset[int]  # primary and supplementary gids
    #: the groups the unit gives it (SupplementaryGroups=) that /etc/group does not
    unit_groups: frozenset[str] = frozenset()
    #: the folders systemd makes for it at each start (StateDirectory=, under /var/lib)
    state_dirs: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Unit:
    """What the service's unit file says about its account."""

    path: str
    user: str
    groups: tuple[str, ...]  # SupplementaryGroups=
    state_dirs: tuple[str, ...]  # StateDirectory=, as /var/lib/NAME


#: where the service's unit is installed, and its drop-ins
INSTALLED_UNIT = Path("/etc/systemd/system/community-edge.service")


def shipped_unit() -> Path:
    """The unit this release ships: deploy/systemd/ of the checkout, or of the install that holds
    this venv (PREFIX/deploy beside PREFIX/.venv; PREFIX/versions/V/deploy beside its venv)."""
    name = Path("deploy") / "systemd" / "community-edge.service"
    # sys.prefix may name the venv by PREFIX/.venv, a link to current/venv: resolved too
    for root in (
        Path(__file__).resolve().parents[1],
        Path(sys.prefix).parent,
        Path(sys.prefix).resolve().parent,
    ):
        if (root / name).is_file():
            return root / name
    return Path(__file__).resolve().parents[1] / name


def read_unit(path: Path | None = None) -> Unit | None:
    """The unit's User=, SupplementaryGroups= and StateDirectory= (its drop-ins in
    NAME.service.d/*.conf applied in order; an empty assignment clears a list, as systemd reads
    it), from `path`, else the installed unit, else the shipped one. None when there is none."""
    if path is None:
        path = INSTALLED_UNIT if INSTALLED_UNIT.is_file() else shipped_unit()
    files = [path, *sorted(Path(f"{path}.d").glob("*.conf"))]
    user = "root"
    lists: dict[str, list[str]] = {"SupplementaryGroups": [], "StateDirectory": []}
    found = False
    for file in files:
        try:
            text = file.read_text(encoding="utf-8")
        except OSError:
            continue
        found = True
        section = ""
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("[") and line.endswith("]"):
                section = line
            elif section == "[Service]" and "=" in line and not line.startswith(("#", ";")):
                key, _, value = line.partition("=")
                key, value = key.strip(), value.strip()
                if key == "User" and value:
                    user = value
                elif key in lists:
                    lists[key] = lists[key] + value.split() if value else []
    if not found:
        return None
    dirs = tuple(f"/var/lib/{d}" for d in lists["StateDirectory"])
    return Unit(str(path), user, tuple(lists["SupplementaryGroups"]), dirs)


def service_user(name: str | None, unit: Unit | None = None) -> User:
    """The named account, else the service's account when it exists, else whoever runs this.
    When `unit` runs as that account, its SupplementaryGroups count as the account's groups (the
    service has them whether /etc/group lists it there or not). KeyError when a named account
    does not exist."""
    if name is None:
        try:
            entry = pwd.getpwnam(SERVICE_USER)
        except KeyError:
            entry = pwd.getpwuid(os.geteuid())
    else:
        entry = pwd.getpwnam(name)
    gids = {entry.pw_gid} | {g.gr_gid for g in grp.getgrall() if entry.pw_name in g.gr_mem}
    granted: set[str] = set()
    state_dirs: frozenset[str] = frozenset()
    if unit is not None and unit.user == entry.pw_name:
        state_dirs = frozenset(unit.state_dirs)
        for group in unit.groups:
            try:
                gid = grp.getgrnam(group).gr_gid
            except KeyError:
                continue  # check_devices says the host lacks it
            if gid not in gids:
                gids.add(gid)
                granted.add(group)
    return User(entry.pw_name, entry.pw_uid, frozenset(gids), frozenset(granted), state_dirs)


def _perms(user: User, st: os.stat_result) -> int:
    """The permission bits of a file of this stat that apply to `user` (its owner's, its group's
    or the others'): 4 read, 2 write, 1 execute/search. Mode bits only: ACLs and capabilities
    other than root's are not looked at."""
    if st.st_uid == user.uid:
        return (st.st_mode >> 6) & 7
    if st.st_gid in user.groups:
        return (st.st_mode >> 3) & 7
    return st.st_mode & 7


def may_open(user: User, st: os.stat_result, read: bool = True, write: bool = True) -> bool:
    """Whether `user` may open a file of this stat for reading and/or writing."""
    if user.uid == 0:
        return True
    bits = _perms(user, st)
    return (not read or bool(bits & 4)) and (not write or bool(bits & 2))


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _in_group(user: User, group: str) -> bool | None:
    """None when the host has no such group."""
    try:
        return grp.getgrnam(group).gr_gid in user.groups
    except KeyError:
        return None


# ---------------------------------------------------------------- the site file's entries
def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, f"{path}[{i}]")
    elif isinstance(value, str):
        yield path, value


def device_nodes(raw: dict[str, Any]) -> list[tuple[str, str]]:
    """(where in the site file, path) of every device node the devices name."""
    out = []
    for i, dev in enumerate(raw.get("devices") or []):
        if isinstance(dev, dict) and dev.get("enabled", True) is not False:
            name = f"devices[{i}] ({dev.get('id', '?')})"
            out += [(name + where, v) for where, v in _strings(dev, "") if v.startswith("/dev/")]
    return out


def secret_files(raw: dict[str, Any]) -> list[tuple[str, str]]:
    """(key path, file) of every secret file the site names: `*_file` keys whose name says
    secret, and the web server's TLS key."""
    out = []

    def walk(value: Any, path: str) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                key = str(k)
                here = f"{path}.{key}" if path else key
                if key.endswith("_file") and isinstance(v, str) and v and any(w in key for w in SECRET_WORDS):
                    out.append((here, v))
                else:
                    walk(v, here)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, f"{path}[{i}]")

    walk(raw, "")
    web = raw.get("web")
    if isinstance(web, dict) and isinstance(web.get("tls_key"), str):
        out.append(("web.tls_key", web["tls_key"]))
    return out


def listen_addresses(raw: dict[str, Any]) -> list[tuple[str, str]]:
    """(section, host:port) of every server the site runs: `web` and any section with `listen`."""
    out = []
    web = raw.get("web") if isinstance(raw.get("web"), dict) else {}
    assert isinstance(web, dict)
    if web.get("enabled", True) is not False:
        out.append(("web.listen", str(web.get("listen") or "0.0.0.0:8080")))
    for key, section in raw.items():
        if key == "web" or not isinstance(section, dict) or not isinstance(section.get("listen"), str):
            continue
        if section.get("enabled", True) is not False:
            out.append((f"{key}.listen", section["listen"]))
    return out


# ---------------------------------------------------------------- the checks
def check_devices(raw: dict[str, Any], user: User) -> Iterator[Finding]:
    needs: dict[str, str] = {}  # group -> why
    for where, path in device_nodes(raw):
        group = "video" if os.path.basename(path).startswith("video") else "dialout"
        needs.setdefault(group, f"{path} ({where})")
        try:
            st = os.stat(path)
        except FileNotFoundError:
            yield Finding(
                "device",
                ERROR,
                f"{path} ({where}) does not exist",
                "plug the device in, or name the node that exists: ls -l /dev/serial/by-id/ /dev/video*",
            )
            continue
        except OSError as exc:
            yield Finding("device", ERROR, f"{path} ({where}) cannot be looked at: {exc.strerror}")
            continue
        if not stat.S_ISCHR(st.st_mode):
            yield Finding(
                "device",
                WARNING,
                f"{path} ({where}) is not a character device (a serial port or camera node)",
                "name the device node itself: ls -l /dev/serial/by-id/ /dev/video*",
            )
        if may_open(user, st):
            yield Finding("device", OK, f"{path}: {user.name} may read and write it")
            continue
        group_name = _group_name(st.st_gid)
        if st.st_gid != 0 and bool(st.st_mode & stat.S_IRGRP) and bool(st.st_mode & stat.S_IWGRP):
            fix = f"sudo usermod -aG {group_name} {user.name}  (then restart the service)"
        else:
            fix = (
                f"sudo chgrp {group} {path} && sudo chmod g+rw {path}  (for good: a udev rule "
                f'SUBSYSTEM=="tty", GROUP="{group}", MODE="0660")'
            )
        yield Finding(
            "device",
            ERROR,
            f"{path} ({where}): {user.name} may not open it for reading and writing "
            f"(mode {stat.S_IMODE(st.st_mode):04o}, owner {st.st_uid}, group {group_name})",
            fix,
        )
    ble = [
        dev.get("id", "?")
        for dev in raw.get("devices") or []
        if isinstance(dev, dict) and dev.get("driver") == "ble" and dev.get("enabled", True) is not False
    ]
    if ble:
        needs.setdefault("bluetooth", f"the BLE devices {', '.join(map(str, ble))}")
    for group, why in sorted(needs.items()):
        member = _in_group(user, group)
        if user.uid == 0:
            yield Finding("group", OK, f"{user.name} may open any device; group {group} not needed")
        elif member is None:
            yield Finding("group", WARNING, f"this host has no group {group} (for {why})")
        elif group in user.unit_groups:
            yield Finding("group", OK, f"{user.name} has group {group} from the unit's SupplementaryGroups")
        elif member:
            yield Finding("group", OK, f"{user.name} is in group {group}")
        else:
            yield Finding(
                "group",
                ERROR,
                f"{user.name} is not in group {group}, which {why} needs",
                f"sudo usermod -aG {group} {user.name}  (then restart the service)",
            )
    if ble:
        yield from check_bluez()


def check_bluez(sysfs: Path = Path("/sys/class/bluetooth")) -> Iterator[Finding]:
    tool = shutil.which("bluetoothctl")
    if tool is None:
        yield Finding(
            "bluez", ERROR, "BlueZ is not installed (no bluetoothctl)", "sudo apt-get install bluez"
        )
    adapters = sorted(p.name for p in sysfs.glob("hci*")) if sysfs.is_dir() else []
    if not adapters:
        yield Finding(
            "bluez",
            ERROR,
            "no Bluetooth adapter (nothing in /sys/class/bluetooth)",
            "plug in a Bluetooth adapter or enable the built-in one; check `rfkill list bluetooth`",
        )
        return
    if tool is None:
        return
    try:
        shown = subprocess.run([tool, "show"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        yield Finding(
            "bluez", WARNING, f"bluetoothctl show did not answer: {exc}", "sudo systemctl start bluetooth"
        )
        return
    if "Powered: yes" in shown:
        yield Finding("bluez", OK, f"Bluetooth adapter powered ({', '.join(adapters)})")
    else:
        yield Finding(
            "bluez",
            ERROR,
            f"no powered Bluetooth adapter ({', '.join(adapters)}; or bluetoothd is not running)",
            "sudo systemctl start bluetooth && sudo rfkill unblock bluetooth && bluetoothctl power on",
        )


def check_disk(raw: dict[str, Any]) -> Iterator[Finding]:
    from edge.config import StorageConfig

    try:
        storage = StorageConfig.model_validate(raw.get("storage") or {})
    except ValueError:
        return  # the site check names the problem
    where = Path(storage.path).parent
    while not where.exists() and where != where.parent:
        where = where.parent
    usage = shutil.disk_usage(where)
    journal = Path(storage.path)
    used = journal.stat().st_size if journal.exists() else 0
    free_mib = usage.free / 2**20
    if usage.free < storage.disk_reserve:
        yield Finding(
            "disk",
            ERROR,
            f"{free_mib:.0f} MiB free on the journal's filesystem ({where}), less than "
            f"storage.disk_reserve ({storage.disk_reserve / 2**20:.0f} MiB): the journal counts as full",
            f"free space on {where} (journalctl --vacuum-size=100M, old files), or lower storage.disk_reserve",
        )
    elif usage.free + used < storage.max_bytes + storage.disk_reserve:
        yield Finding(
            "disk",
            WARNING,
            f"{free_mib:.0f} MiB free on {where}: the journal cannot grow to storage.max_bytes "
            f"({storage.max_bytes / 2**20:.0f} MiB); it will count as full before its cap",
            f"lower storage.max_bytes to about {(usage.free + used - storage.disk_reserve) * 0.8 / 2**20:.0f}MiB, "
            "or give the journal a bigger filesystem",
        )
    else:
        yield Finding("disk", OK, f"{free_mib:.0f} MiB free on {where}")


def check_clock(raw: dict[str, Any]) -> Iterator[Finding]:
    from edge.clock import kernel_sync_status

    sync = kernel_sync_status()
    trusted = isinstance(raw.get("clock"), dict) and raw["clock"].get("trust_unsynced") is True
    if sync.synchronised:
        yield Finding("clock", OK, f"the clock is synchronised ({sync.detail})")
    else:
        yield Finding(
            "clock",
            INFO if trusted else WARNING,
            f"the clock is not synchronised ({sync.detail})"
            + (
                "; the site trusts it anyway (clock.trust_unsynced)"
                if trusted
                else ": the gateway will not trust it (clock_untrusted, edge_clock_trusted 0)"
            ),
            "sudo timedatectl set-ntp true  (needs systemd-timesyncd or chrony and a reachable NTP server)"
            + ("" if trusted else "; a box with a battery-backed RTC may set clock.trust_unsynced: true"),
        )


def check_ports(raw: dict[str, Any]) -> Iterator[Finding]:
    from edge.config import StorageConfig
    from edge.store import space

    try:
        running = space.read_status(StorageConfig.model_validate(raw.get("storage") or {}).path)
    except ValueError:
        running = None
    for key, listen in listen_addresses(raw):
        host, _, port_text = listen.rpartition(":")
        host = host.strip("[]") or "0.0.0.0"
        try:
            port = int(port_text)
        except ValueError:
            continue  # the site check names it
        if port == 0:
            continue
        if running:
            yield Finding(
                "port", INFO, f"{key} {listen}: not tried, the gateway runs (pid {running.get('pid')})"
            )
            continue
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind
            try:
                s.bind((host, port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    yield Finding(
                        "port",
                        ERROR,
                        f"{key} {listen}: the port is in use by another program",
                        f"sudo ss -ltnp 'sport = :{port}'  (stop that program, or change {key})",
                    )
                elif exc.errno == errno.EACCES:
                    yield Finding(
                        "port",
                        ERROR,
                        f"{key} {listen}: a port below 1024 needs a privilege the service user lacks",
                        f"use a port above 1023 in {key}, or AmbientCapabilities=CAP_NET_BIND_SERVICE in the unit",
                    )
                else:
                    yield Finding(
                        "port", ERROR, f"{key} {listen}: cannot listen there: {exc.strerror}", f"fix {key}"
                    )
                continue
        yield Finding("port", OK, f"{key} {listen}: free")


def check_secrets(raw: dict[str, Any], user: User) -> Iterator[Finding]:
    from edge.validation import site_relative

    for key, name in secret_files(raw):
        path = Path(site_relative(name))
        try:
            st = path.stat()
        except FileNotFoundError:
            yield Finding(
                "secret",
                ERROR,
                f"{key}: {path} does not exist",
                f"create it: install -m 600 -o {user.name} /dev/null {path}, then write the secret",
            )
            continue
        except OSError as exc:
            yield Finding("secret", ERROR, f"{key}: {path} cannot be looked at: {exc.strerror}")
            continue
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            yield Finding(
                "secret",
                ERROR,
                f"{key}: {path} has mode {mode:04o}: other users may read the secret",
                f"chmod 600 {path}",
            )
        elif not may_open(user, st, write=False):
            yield Finding(
                "secret",
                ERROR,
                f"{key}: {path} is not readable by {user.name}, who runs the gateway",
                f"sudo chown {user.name} {path}",
            )
        else:
            yield Finding("secret", OK, f"{key}: {path} is {user.name}'s alone ({mode:04o})")


def check_keys(raw: dict[str, Any]) -> Iterator[Finding]:
    """A site that seals (`privacy.master_key_file`): its keys.db, read without changing it, must
    open with that master key, and must be there when the site holds sealed data: a start, an
    export or a forget would be refused. A key file that cannot be read is the secrets check's."""
    from edge.config import StorageConfig
    from edge.privacy.atrest import check_key_store, keys_path
    from edge.privacy.keyfile import KeyFileError, load_master_key
    from edge.privacy.keys import KeyStoreUnusable, opens_with
    from edge.validation import site_relative

    privacy = raw.get("privacy")
    key_file = privacy.get("master_key_file") if isinstance(privacy, dict) else None
    if not isinstance(key_file, str) or not key_file:
        return
    try:
        storage = StorageConfig.model_validate(raw.get("storage") or {})
        master = load_master_key(site_relative(key_file))
    except (ValueError, KeyFileError):
        return  # the site and secrets checks name the problem
    keys = keys_path(storage.path)
    try:
        check_key_store(storage.path, storage.resolved_state_path(), storage.resolved_blob_dir())
        if not Path(keys).is_file() or Path(keys).stat().st_size == 0:
            yield Finding("keys", OK, f"{keys}: none yet, and nothing sealed: created at the first start")
            return
        opens = opens_with(keys, master)
    except KeyStoreUnusable as exc:
        yield Finding(
            "keys", ERROR, str(exc), "put keys.db back from its copy (docs/fleet.md, Backup and restore)"
        )
        return
    except OSError as exc:
        yield Finding("keys", ERROR, f"{keys} cannot be looked at: {exc.strerror}")
        return
    if opens:
        yield Finding("keys", OK, f"privacy.master_key_file opens {keys}")
        return
    yield Finding(
        "keys",
        ERROR,
        f"privacy.master_key_file {key_file} does not open {keys}: it was written, or last rotated, "
        "under another master key (the gateway will not start)",
        "set privacy.master_key_file to the key keys.db was last rotated to (edge privacy rotate-key "
        "named it), or put back the keys.db of this key",
    )


def _dir_usable(user: User, st: os.stat_result) -> bool:
    """Whether `user` may create and rename files in a folder of this stat (write and search)."""
    return user.uid == 0 or _perms(user, st) & 3 == 3


def _unsearchable(user: User, path: Path) -> tuple[Path, str] | None:
    """The first folder above `path` that `user` may not search (pass through), and that said
    with its owner and mode; None when it may reach `path`."""
    if user.uid == 0:
        return None
    for folder in reversed(path.absolute().parents):
        try:
            st = folder.stat()
        except OSError as exc:
            return folder, f"{folder}: {exc.strerror}"
        if not _perms(user, st) & 1:
            return folder, f"{folder}/ ({_owner(st)}) may not be searched by {user.name}"
    return None


def _cannot_create(user: User, folder: Path) -> str | None:
    """Why `user` could not create the missing `folder` (None when it can): the gateway makes it,
    with the folders above it that are missing, inside the nearest one that exists. A folder
    systemd makes for the service (the unit's StateDirectory=) counts as the user's."""
    for above in (folder, *folder.parents):
        if str(above) in user.state_dirs:
            return None  # systemd creates it, the user's, at each start
    parent = folder.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    try:
        st = parent.stat()
    except OSError as exc:
        return f"missing; {parent}: {exc.strerror}"
    blocked = _unsearchable(user, parent / "x")
    if blocked:
        return f"missing; {blocked[1]}"
    if not _dir_usable(user, st):
        return f"missing, and {user.name} may not create it in {parent}/ ({_owner(st)})"
    return None


def _owner(st: os.stat_result) -> str:
    try:
        name = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        name = str(st.st_uid)
    return f"{name}:{_group_name(st.st_gid)} {stat.S_IMODE(st.st_mode):04o}"


def check_data(raw: dict[str, Any], user: User) -> Iterator[Finding]:
    """The journal, state DB, trend index, the site's lock file and snapshot folder (and their
    folders) must be readable and writable by the service's user: a restore or an `edge` command
    run as root can leave root-owned files the service then cannot open. A folder not there yet
    must be one that user may create; and the databases must pass `check_integrity`."""
    from edge import paths
    from edge.config import StorageConfig

    try:
        storage = StorageConfig.model_validate(raw.get("storage") or {})
    except ValueError:
        return  # the site check names the problem
    journal = Path(storage.path)
    databases = [journal, Path(storage.resolved_state_path()), Path(paths.trend_path(str(journal)))]
    blobs = Path(storage.resolved_blob_dir())
    folders = sorted({p.parent for p in databases} | {blobs.parent})
    wrong: list[str] = []
    repair: set[Path] = set()
    missing: list[tuple[Path, str]] = []  # (folder, why the user cannot create it)
    for folder in folders:
        try:
            st = folder.stat()
        except FileNotFoundError:
            why = _cannot_create(user, folder)
            if why:
                missing.append((folder, why))
            continue
        except OSError as exc:
            wrong.append(f"{folder} ({exc.strerror})")
            repair.add(folder)
            continue
        if not _dir_usable(user, st) or not may_open(user, st, write=False):
            wrong.append(f"{folder}/ ({_owner(st)})")
            repair.add(folder)
    from edge.runtime import LOCK_SUFFIX

    candidates = [Path(f"{db}{suffix}") for db in databases for suffix in ("", "-wal", "-shm")]
    # the site's lock file: a root command killed while it held it (a restore) leaves it root's
    candidates.append(Path(f"{journal}{LOCK_SUFFIX}"))
    if blobs.is_dir():
        candidates += [blobs, *blobs.rglob("*")]
    for path in candidates:
        try:
            st = path.lstat()
        except FileNotFoundError:
            continue
        except OSError as exc:
            wrong.append(f"{path} ({exc.strerror})")
            repair.add(path.parent)
            continue
        if stat.S_ISLNK(st.st_mode):
            continue
        usable = _dir_usable(user, st) if stat.S_ISDIR(st.st_mode) else True
        if not usable or not may_open(user, st):
            wrong.append(f"{path} ({_owner(st)})")
            repair.add(blobs.parent if path.is_relative_to(blobs) else path.parent)
    try:
        group = _group_name(pwd.getpwnam(user.name).pw_gid)
    except KeyError:
        group = ""
    if missing:
        yield Finding(
            "data",
            ERROR,
            f"{user.name}, who runs the gateway, cannot create the data folder "
            + ", ".join(f"{folder} ({why})" for folder, why in missing)
            + ": it will not start",
            f"sudo install -d -m 0750 -o {user.name}{' -g ' + group if group else ''} "
            + " ".join(str(folder) for folder, _ in missing),
        )
    # one line for what is fine: the files' access and the databases' quick_check
    checked = []
    for found in check_integrity(raw):
        if found.severity == OK:
            checked.append(found.message)
        else:
            yield found
    if not wrong:
        if not missing:
            yield Finding(
                "data",
                OK,
                f"the data files are {user.name}'s to read and write"
                + (f"; quick_check ok: {', '.join(checked)}" if checked else ""),
            )
        return
    more = f" and {len(wrong) - 3} more" if len(wrong) > 3 else ""
    yield Finding(
        "data",
        ERROR,
        f"{user.name}, who runs the gateway, cannot read and write {', '.join(wrong[:3])}{more}: "
        "it will not open its databases",
        f"sudo chown -R {user.name}{':' + group if group else ''} {' '.join(str(p) for p in sorted(repair))}",
    )


#: how long `edge doctor` spends on the databases' quick_check, all of them together: it reads
#: every page (a 230 MiB journal took 0.6 s from a warm cache on an x86 box; from an SD card it
#: goes at the card's read speed, 20-80 MB/s), so a larger journal is checked in part, and said so
INTEGRITY_BUDGET_S = 30.0


def check_integrity(raw: dict[str, Any], budget_s: float = INTEGRITY_BUDGET_S) -> Iterator[Finding]:
    """`PRAGMA quick_check` of the journal, the state DB, the trend index and keys.db, each read
    read-only: a damaged page is found here rather than by a start that fails, a retention that
    fails every few seconds, or a backup its own restore refuses. Within `budget_s` for them all."""
    import sqlite3
    import time

    from edge import paths
    from edge.config import StorageConfig
    from edge.privacy.atrest import keys_path

    try:
        storage = StorageConfig.model_validate(raw.get("storage") or {})
    except ValueError:
        return  # the site check names the problem
    journal = storage.path
    restore = "restore it from a backup: stop the gateway, then edge restore -c SITE.yaml BACKUP.tar.gz"
    databases = [
        ("journal", journal, restore),
        ("state DB", storage.resolved_state_path(), restore),
        (
            "trend index",
            paths.trend_path(journal),
            f"stop the gateway and delete {paths.trend_path(journal)} (and its -wal, -shm): it holds only "
            "what the gateway derives from the journal, and rebuilds it at the next start",
        ),
        ("keys.db", keys_path(journal), restore + " (keys.db is in it)"),
    ]
    deadline = time.monotonic() + budget_s
    for i, (what, name, fix) in enumerate(databases):
        path = Path(name)
        if not path.is_file() or path.stat().st_size == 0:
            continue
        # immutable only when nobody has it open: SQLite then makes no -wal or -shm, which would be
        # root's and keep the gateway out. Every connection to a WAL database maps its -shm, so no
        # -shm (and nothing in a -wal) is what says so; an empty -wal does not: state.db and
        # keys.db truncate theirs while the gateway runs, and an immutable read of a file a
        # checkpoint writes meanwhile can see a damage that is not there
        wal, shm = Path(f"{path}-wal"), Path(f"{path}-shm")
        in_use = shm.exists() or (wal.exists() and wal.stat().st_size > 0)
        immutable = "" if in_use else "&immutable=1"
        try:
            conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro{immutable}", uri=True)
        except sqlite3.Error as exc:
            yield Finding("data", WARNING, f"{what} {path} could not be opened to check it: {exc}")
            continue
        out_of_time = False

        def stop() -> int:
            nonlocal out_of_time
            out_of_time = time.monotonic() > deadline
            return 1 if out_of_time else 0

        conn.set_progress_handler(stop, 1000)
        try:
            rows = [str(r[0]) for r in conn.execute("PRAGMA quick_check(5)")]
        except sqlite3.DatabaseError as exc:
            rows = [] if out_of_time else [str(exc)]
        finally:
            conn.close()
        if out_of_time:
            rest = [str(n) for _, n, _ in databases[i:] if Path(n).is_file()]
            yield Finding(
                "data",
                INFO,
                f"not fully checked within {budget_s:.0f} s (quick_check reads every page): {', '.join(rest)}",
                "check each whole, the gateway stopped: sqlite3 FILE 'PRAGMA quick_check'",
            )
            return
        if rows == ["ok"]:
            yield Finding("data", OK, path.name)
            continue
        yield Finding(
            "data",
            ERROR,
            f"{what} {path} is damaged (PRAGMA quick_check: {'; '.join(rows)[:300]})",
            fix,
        )


def check_site(config: str) -> tuple[dict[str, Any] | None, list[Finding]]:
    """The raw mapping of the site file (None when it is not YAML) and what `edge check` finds."""
    from edge.config import ConfigError, load_site
    from edge.yamlpos import YamlError
    from edge.yamlpos import load as load_yaml
    from edge.yamlpos import read_text as read_yaml_text

    try:
        raw, _ = load_yaml(read_yaml_text(Path(config)), config)
    except (YamlError, OSError) as exc:
        problems = getattr(exc, "problems", None) or [exc]
        return None, [Finding("site", ERROR, str(p), f"edge check -c {config}") for p in problems]
    if not isinstance(raw, dict):
        return None, [Finding("site", ERROR, f"{config}: not a mapping", f"edge check -c {config}")]
    try:
        load_site(config)
    except ConfigError as exc:
        return raw, [Finding("site", ERROR, str(p), f"fix it; edge check -c {config}") for p in exc.problems]
    return raw, [Finding("site", OK, f"{config} is valid")]


def check_site_access(config: str, user: User) -> Iterator[Finding]:
    """The service reads its site file as `user` (ExecStartPre's `edge check` too): a file this
    command may read, as root, may still be closed to it."""
    path = Path(config)
    try:
        st = path.stat()
    except OSError:
        return  # check_site names it
    blocked = _unsearchable(user, path)
    if blocked:
        folder, why = blocked
        yield Finding(
            "site",
            ERROR,
            f"{config}: {why}: the gateway, which runs as {user.name}, cannot read its site file",
            f"sudo chgrp {_primary_group(user)} {folder} && sudo chmod g+x {folder}",
        )
    elif not may_open(user, st, write=False):
        yield Finding(
            "site",
            ERROR,
            f"{config} ({_owner(st)}) is not readable by {user.name}, who runs the gateway",
            f"sudo chgrp {_primary_group(user)} {config} && sudo chmod g+r {config}",
        )


def _primary_group(user: User) -> str:
    try:
        return _group_name(pwd.getpwnam(user.name).pw_gid)
    except KeyError:
        return user.name


def diagnose(config: str, user: User) -> list[Finding]:
    from edge.validation import beside

    raw, findings = check_site(config)
    findings.extend(check_site_access(config, user))
    if raw is not None:
        with beside(config):  # the paths in it as the gateway reads them: beside the site file
            findings.extend(_checks(_shaped(raw), user, valid=findings[0].severity == OK))
    return findings


#: the top-level keys of a site file that hold a list; every other one holds a mapping
LIST_KEYS = ("devices", "upstream", "consumers")


def _shaped(raw: dict[str, Any]) -> dict[str, Any]:
    """The site file's sections of the shape the checks read (`devices: 5` left out): what is not
    is a problem `check_site` has named already, with its line."""
    return {k: v for k, v in raw.items() if v is None or isinstance(v, list if k in LIST_KEYS else dict)}


def _checks(raw: dict[str, Any], user: User, valid: bool = True) -> Iterator[Finding]:
    for name, check in (
        ("device", lambda: check_devices(raw, user)),
        ("disk", lambda: check_disk(raw)),
        ("data", lambda: check_data(raw, user)),
        ("port", lambda: check_ports(raw)),
        ("secret", lambda: check_secrets(raw, user)),
        ("keys", lambda: check_keys(raw)),
        ("clock", lambda: check_clock(raw)),
    ):
        try:
            yield from check()
        except Exception as exc:
            if valid:
                raise
            # a value of the wrong kind deeper in a file that does not validate (named above)
            yield Finding(
                name,
                INFO,
                f"not checked: the site file has errors (above) ({type(exc).__name__}: {exc})".splitlines()[
                    0
                ],
                "fix the site file first",
            )


def worst(findings: list[Finding]) -> str:
    order = [OK, INFO, WARNING, ERROR]
    return max((f.severity for f in findings), key=order.index, default=OK)


def cmd_doctor(args: argparse.Namespace) -> int:
    unit = read_unit(Path(args.unit) if args.unit else None)
    if args.unit and unit is None:
        print(f"edge doctor: --unit {args.unit}: cannot read that unit file", file=sys.stderr)
        return EXIT[ERROR]
    try:
        user = service_user(args.user, unit)
    except KeyError:
        print(
            f"edge doctor: no user {args.user!r} on this host (--user names the account the gateway runs as)",
            file=sys.stderr,
        )
        return EXIT[ERROR]
    findings = diagnose(args.config, user)
    verdict = worst(findings)
    if args.json:
        print(
            json.dumps(
                {"user": user.name, "worst": verdict, "findings": [asdict(f) for f in findings]}, indent=2
            )
        )
    else:
        marks = {OK: "ok  ", INFO: "info", WARNING: "WARN", ERROR: "FAIL"}
        for f in findings:
            if f.severity == OK and not args.verbose:
                continue
            print(f"{marks[f.severity]} {f.check:<7} {f.message}")
            if f.fix and f.severity != OK:
                print(f"             fix: {f.fix}")
        problems = sum(1 for f in findings if f.severity in (WARNING, ERROR))
        print(
            f"{fmt.count(len(findings), 'check')} as user {user.name}: "
            + (f"{problems} to fix" if problems else "nothing to fix")
        )
    return EXIT[verdict]


def register(sub: Subcommands) -> None:
    add_command(
        sub,
        "doctor",
        help="check this host for the site: devices, groups, BlueZ, disk, data files, clock, ports, secrets, keys",
        description="Check what on this host stands between the site file and a working gateway: the\n"
        "site file and whether the service user may read it, the device nodes it names and whether\n"
        "that user may open them, its membership of dialout/video/bluetooth (the unit's\n"
        "SupplementaryGroups= count), BlueZ (a site with BLE devices), the space on the journal's\n"
        "filesystem, whether that user may read and write the data files (journal, state DB, trend\n"
        "index, snapshots) or create their missing folder, whether those databases and keys.db pass\n"
        "SQLite's quick_check (at most 30 s in all; a larger journal is checked in part, and said\n"
        "so), the clock's sync, the ports it listens on, the modes of its secret files, and whether\n"
        "its master key opens its keys.db (read-only; a keys.db missing while sealed data exists is\n"
        "an error). Each problem comes with the command that fixes it. It changes nothing.\n\n"
        "exit codes: 0 nothing to fix, 1 warnings, 2 errors",
        epilog="example:\n  sudo edge doctor -c /etc/community-edge/site.yaml",
        func=cmd_doctor,
        config=True,
        args=[
            arg("--json", action="store_true", help="print the findings as JSON"),
            arg(
                "--user",
                help=f"the account the gateway runs as (default: {SERVICE_USER} if it exists, else you)",
            ),
            arg(
                "--unit",
                metavar="FILE",
                help="the service's unit file, whose SupplementaryGroups= the user has when it is the "
                f"unit's User= (default: {INSTALLED_UNIT} if installed, else the one this release ships)",
            ),
            arg("-v", "--verbose", action="store_true", help="list what is fine too"),
        ],
    )
