"""The site file: one YAML document validated into typed models.

Validation collects every problem at once and names the file, the line and the key of each.
The core sections are validated here; a device entry by the model its driver's plugin declares,
an upstream entry by its sink's, and every other top-level section by the plugin that declares it
(`edge.plugins`): each imported only when the site uses it.
"""

from __future__ import annotations

import contextlib
import os
import types
import typing
import zoneinfo
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator

from edge.clock import ClockConfig
from edge.driver import DeviceConfig
from edge.model import ID_RE, SITE_ID_RE, PointInfo, Privacy
from edge.plugins import registry
from edge.privacy.config import PrivacyConfig
from edge.privacy.pseudonym import PseudonymiseConfig
from edge.units import Duration, Size
from edge.validation import (
    ConfigError,
    ConsumerId,
    ListenAddress,
    SitePath,
    Strict,
    UpstreamId,
    beside,
    valid_listen,
)

# kept only while edge/api/auth.py still imports it from here; its one place is edge.validation
from edge.yamlpos import Path, Positions, Problem, YamlError, format_path
from edge.yamlpos import load as load_yaml
from edge.yamlpos import read_text as read_yaml_text

PROFILE_DIR = FsPath(__file__).resolve().parent.parent / "drivers" / "profiles"
# `key`: a pseudonym key written in clear (`pseudonymise: {key: ...}`) is refused like a token
SECRET_KEYS = {"token", "password", "secret", "api_key", "hmac_secret", "private_key", "bind_key", "key"}


# ---------------------------------------------------------------- core sections
class SiteInfo(Strict):
    id: str
    name: str = ""
    timezone: str = "Asia/Shanghai"

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not SITE_ID_RE.match(v):
            raise ValueError(f"invalid site id {v!r}: use lowercase letters, digits and '-'")
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            zoneinfo.ZoneInfo(v)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {v!r}; expected an IANA name such as Asia/Shanghai") from None
        return v


class StorageConfig(Strict):
    path: SitePath = "/var/lib/community-edge/edge.db"
    state_path: SitePath | None = None  # rules, accounts, audit; default: state.db beside `path`
    blob_dir: SitePath | None = None  # camera snapshots; default: blobs/ beside `path`
    max_bytes: Size = 4 * 1024**3
    # left free on the journal's filesystem for the WAL, checkpoints, trend index and snapshots:
    # beyond it the disk counts as full (the when_full policy applies) before SQLite ever fails
    disk_reserve: Size = Field(default=32 * 1024**2, ge=0)
    when_full: Literal["drop_oldest", "drop_newest"] = "drop_oldest"
    keep_history: Duration = 7 * 86400.0
    durability: Literal["normal", "strict"] = "normal"
    flush_interval: Duration = 0.1  # group commit: flush at least this often...
    flush_max_items: int = Field(default=5000, ge=1, le=1_000_000)  # ...or when this many records wait

    def resolved_state_path(self) -> str:
        return self.state_path or str(FsPath(self.path).with_name("state.db"))

    def resolved_blob_dir(self) -> str:
        return self.blob_dir or str(FsPath(self.path).with_name("blobs"))


class WebConfig(ListenAddress, Strict):
    listen: str = "0.0.0.0:8080"
    tls_cert: SitePath | None = None
    tls_key: SitePath | None = None
    enabled: bool = True

    @field_validator("listen", mode="before")
    @classmethod
    def _listen(cls, v: object) -> str:
        return valid_listen(v)


class ConsumerConfig(Strict):
    """A pull-API client; its token is given by reference only."""

    id: ConsumerId
    description: str = ""
    token_env: str | None = None
    token_file: SitePath | None = None
    # the most private class of data this consumer may pull (sensitive data stays on site by default)
    max_privacy: Privacy = Privacy.PERSONAL
    # its own pseudonym key, extra fields and fields it sees in clear; without it the identifying
    # fields of the shipped event kinds are withheld from this consumer (docs/privacy.md)
    pseudonymise: PseudonymiseConfig | None = None


class SinkConfig(Strict):
    """Fields every upstream sink shares; a sink type subclasses it."""

    id: UpstreamId
    type: str
    enabled: bool = True


class _Envelope(Strict):
    """The core keys of the top level; plugin sections are validated by their plugins."""

    site: SiteInfo
    storage: StorageConfig = Field(default_factory=lambda: StorageConfig())
    web: WebConfig = Field(default_factory=lambda: WebConfig())
    devices: list[dict[str, Any]] = Field(default_factory=list)
    upstream: list[dict[str, Any]] = Field(default_factory=list)
    consumers: list[ConsumerConfig] = Field(default_factory=list)
    privacy: PrivacyConfig = Field(default_factory=lambda: PrivacyConfig())
    clock: ClockConfig = Field(default_factory=lambda: ClockConfig())


@dataclass
class Site:
    """A validated site file."""

    source: str
    site: SiteInfo
    storage: StorageConfig
    web: WebConfig
    devices: list[DeviceConfig]
    upstream: list[SinkConfig]
    consumers: list[ConsumerConfig]
    sections: dict[str, BaseModel] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    clock: ClockConfig = field(default_factory=ClockConfig)
    #: what `edge check` prints but does not refuse (a recipient that sees a field in clear)
    warnings: list[Problem] = field(default_factory=list)

    def device(self, device_id: str) -> DeviceConfig:
        for d in self.devices:
            if d.id == device_id:
                return d
        raise KeyError(device_id)

    def point_infos(self) -> list[PointInfo]:
        out: list[PointInfo] = []
        for d in self.devices:
            out.extend(d.point_infos())
        return out

    def cursor_owner(self, name: str, cursors: Mapping[str, tuple[Any, ...]] | None = None) -> str | None:
        """What other than a pull consumer a journal cursor named `name` belongs to ("the upstream
        sink 'X'", "the KPI fold's cursor 'kpi'"), None when it is a pull consumer's or nobody's
        yet. Sinks are judged by this file, so a sink not started yet (or disabled) keeps its id
        too; `cursors` are the journal's (name -> (kind, ...)), so a cursor of another kind that
        is there already is not taken either."""
        if any(s.id == name for s in self.upstream):
            return f"the upstream sink {name!r}"
        reserved = registry().component_cursors()
        if name in reserved:
            return f"{reserved[name]}'s cursor {name!r}"
        held = (cursors or {}).get(name)
        return None if held is None or held[0] == "consumer" else f"the {held[0]} cursor {name!r}"


# ---------------------------------------------------------------- secrets
def _secret_problems(data: Any, path: Path, pos: Positions) -> list[Problem]:
    out: list[Problem] = []
    if isinstance(data, dict):
        for k, v in data.items():
            if isinstance(k, str) and k.lower() in SECRET_KEYS and v not in (None, ""):
                out.append(
                    pos.problem(
                        (*path, k),
                        f"secrets are never written in the site file: use {k}_env: VARIABLE or {k}_file: PATH",
                    )
                )
            else:
                out.extend(_secret_problems(v, (*path, k), pos))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out.extend(_secret_problems(v, (*path, i), pos))
    return out


# ---------------------------------------------------------------- pydantic errors -> problems
def _model_at(model: Any, loc: Sequence[str | int]) -> type[BaseModel] | None:
    """The BaseModel class found by following `loc` from `model` (for listing accepted keys)."""
    current: Any = model
    for part in loc:
        current = _unwrap_model(current, part)
        if current is None:
            return None
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap_model(tp: Any, part: str | int) -> Any:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        if isinstance(part, int):
            return None
        f = tp.model_fields.get(part)
        return _strip(f.annotation) if f else None
    origin = typing.get_origin(tp)
    if origin in (list, tuple, Sequence) and isinstance(part, int):
        args = typing.get_args(tp)
        return _strip(args[0]) if args else None
    if origin is dict and isinstance(part, str):
        args = typing.get_args(tp)
        return _strip(args[1]) if len(args) == 2 else None
    return None


def _strip(tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _strip(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            if arg is not type(None):
                s = _strip(arg)
                if (isinstance(s, type) and issubclass(s, BaseModel)) or typing.get_origin(s):
                    return s
        return None
    return tp


def validation_problems(
    exc: ValidationError,
    model: type[BaseModel],
    prefix: Path,
    pos: Positions,
    more_keys: Sequence[str] = (),
    skip_missing: bool = False,
) -> list[Problem]:
    """Turn a pydantic ValidationError into located, readable problems. `more_keys`: keys accepted
    at the top of `model` beyond its fields (the plugins' sections of the site file);
    `skip_missing`: leave out missing keys (a profile that could not be read would give them)."""
    out = []
    for err in exc.errors(include_url=False):
        if skip_missing and err["type"] == "missing":
            continue
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        # tagged/union branches show up as extra loc parts; keep only ones that exist in the data
        path = (*prefix, *loc)
        kind = err["type"]
        if kind == "extra_forbidden":
            parent = _model_at(model, loc[:-1])
            keys = [*parent.model_fields, *(more_keys if len(loc) == 1 else ())] if parent else []
            accepted = ", ".join(keys)
            msg = f"unknown key {loc[-1]!r}" + (f"; accepted keys: {accepted}" if accepted else "")
        elif kind == "missing":
            msg = "required key is missing"
        elif kind == "value_error":
            msg = str(err.get("ctx", {}).get("error", err["msg"]))
        elif kind == "literal_error":
            msg = f"{err['input']!r} is not accepted; expected {err['ctx']['expected']}"
        elif kind == "enum":
            msg = f"{err['input']!r} is not accepted; expected {err['ctx']['expected']}"
        else:
            got = err.get("input")
            shown = f" (got {got!r})" if not isinstance(got, dict | list) else ""
            msg = f"{err['msg'].rstrip('.')}{shown}"
        out.append(pos.problem(path, msg))
    return out


def _without_profile(
    entry: dict[str, Any], path: Path, pos: Positions, find_model: Callable[[str], type[BaseModel]]
) -> list[Problem]:
    """The other problems of a device whose profile cannot be read, so one fix run shows them
    all: its own keys checked against its driver's model (when it names the driver), leaving out
    the keys the profile may have given."""
    driver = entry.get("driver")
    guessed = ""
    if driver is None:  # the profile would name it: take the driver of the profile meant
        import difflib  # only a misspelt profile needs it: not resident in every running gateway

        known = sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))
        close = difflib.get_close_matches(str(entry.get("profile")), known, n=1, cutoff=0.6)
        with contextlib.suppress(LookupError, YamlError):
            driver = load_profile(close[0])[0].get("driver") if close else None
            guessed = f" (checked as a {driver} device, like profile {close[0]!r})"
    if not isinstance(driver, str):
        return []
    try:
        model = find_model(driver)
    except (LookupError, ImportError) as exc:
        return [pos.problem((*path, "driver"), str(exc))]
    try:
        model.model_validate({k: v for k, v in entry.items() if k != "profile"} | {"driver": driver})
    except ValidationError as exc:
        found = validation_problems(exc, model, path, pos, skip_missing=True)
        return [Problem(p.file, p.line, p.path, p.message + guessed, p.column) for p in found]
    return []


# ---------------------------------------------------------------- profiles
def load_profile(name: str, profile_dir: FsPath | None = None) -> tuple[dict[str, Any], Positions]:
    profile_dir = profile_dir or PROFILE_DIR
    path = profile_dir / f"{name}.yaml"
    if not _check_profile_name(name) or not path.is_file():
        known = sorted(p.stem for p in profile_dir.glob("*.yaml"))
        raise LookupError(f"unknown profile {name!r}; known profiles: {', '.join(known) or 'none'}")
    data, pos = load_yaml(read_yaml_text(path), str(path))
    if not isinstance(data, dict):
        raise LookupError(f"profile {name!r} is not a mapping")
    return data, pos


def _check_profile_name(name: str) -> bool:
    return isinstance(name, str) and bool(ID_RE.match(name))


def merge_profile(profile: dict[str, Any], device: dict[str, Any]) -> dict[str, Any]:
    """Profile defaults under the device entry; points merged by name (device keys win)."""
    merged: dict[str, Any] = {}
    for k, v in (profile.get("defaults") or {}).items():
        merged[k] = v
    if "driver" in profile and "driver" not in device:
        merged["driver"] = profile["driver"]
    for k, v in device.items():
        if k != "points":
            merged[k] = v
    points: list[dict[str, Any]] = [dict(p) for p in profile.get("points") or []]
    by_name = {p.get("name"): p for p in points}
    exclude = set(device.get("exclude_points") or [])
    merged.pop("exclude_points", None)
    for p in device.get("points") or []:
        if isinstance(p, dict) and p.get("name") in by_name:
            by_name[p["name"]].update(p)
        else:
            points.append(p)
    points = [p for p in points if not (isinstance(p, dict) and p.get("name") in exclude)]
    if points:
        merged["points"] = points
    return merged


# ---------------------------------------------------------------- loading
def load_site_text(text: str, file: str = "<site>") -> Site:
    try:
        data, pos = load_yaml(text, file)
    except YamlError as exc:
        raise ConfigError(exc.problems) from None
    if not isinstance(data, dict):
        raise ConfigError([Problem(file, 1, (), "the site file must be a mapping with at least `site:`")])

    problems = _secret_problems(data, (), pos)
    plugins = registry()
    reserved = plugins.component_cursors()  # fixed journal cursor names: no sink or consumer id
    section_keys = plugins.section_keys()
    try:
        env = _Envelope.model_validate({k: v for k, v in data.items() if k not in section_keys})
    except ValidationError as exc:
        # device and upstream entries are validated one by one below, by their own models
        problems.extend(
            p
            for p in validation_problems(exc, _Envelope, (), pos, sorted(section_keys))
            if not (len(p.path) >= 2 and p.path[0] in ("devices", "upstream"))
        )
        env = None

    def validated(
        entry: dict[str, Any],
        path: Path,
        find_model: Callable[[str], type[BaseModel]],
        label: str,
        name: Any,
        key: Path,
        prefix: str = "",
    ) -> BaseModel | None:
        """A device or upstream `entry` (at `path`) validated by the model its plugin gives for
        `name`, or None with the problems added. An unknown name, or a plugin that cannot be
        imported, is reported at `key` (the `driver:`, `profile:` or `type:` that named it), after
        `prefix` (the profile that named the driver)."""
        try:
            model = find_model(str(name))
        except LookupError as exc:
            problems.append(pos.problem(key, prefix + str(exc)))
            return None
        except ImportError as exc:
            problems.append(pos.problem(key, f"{prefix}{label} {name!r} cannot be loaded: {exc}"))
            return None
        try:
            return model.model_validate(entry)
        except ValidationError as exc:
            problems.extend(validation_problems(exc, model, path, pos))
            return None

    devices: list[DeviceConfig] = []
    seen_devices: dict[str, int] = {}
    seen_exclusive: dict[tuple[str, str], int] = {}
    devices_by_index: dict[int, str] = {}
    for i, entry in enumerate(data.get("devices") or [] if isinstance(data.get("devices"), list) else []):
        path: Path = ("devices", i)
        if not isinstance(entry, dict):
            problems.append(pos.problem(path, "a device entry must be a mapping with id: and driver:"))
            continue
        driver_key: Path = (*path, "driver")
        driver_from = ""
        if entry.get("profile") is not None and entry.get("driver") is None:
            driver_key, driver_from = (*path, "profile"), f"profile {entry['profile']!r} uses "
        if entry.get("profile") is not None:
            try:
                profile, _ = load_profile(entry["profile"])
                entry = merge_profile(profile, entry)
            except (LookupError, YamlError) as exc:
                problems.append(pos.problem((*path, "profile"), str(exc)))
                problems.extend(_without_profile(entry, path, pos, plugins.device_model))
                continue
        driver_name = entry.get("driver")
        if not driver_name:
            problems.append(pos.problem(path, "required key 'driver' is missing (or give a profile:)"))
            continue
        found = validated(entry, path, plugins.device_model, "driver", driver_name, driver_key, driver_from)
        if found is None:
            continue
        dev = typing.cast(DeviceConfig, found)
        # an entry refused for one reason is still checked for the others: every problem at once
        before = len(problems)
        if dev.id in seen_devices:
            problems.append(
                pos.problem(
                    (*path, "id"), f"duplicate device id {dev.id!r} (also devices[{seen_devices[dev.id]}])"
                )
            )
        else:
            seen_devices[dev.id] = i
        taken = next((k for k in dev.exclusive() if k in seen_exclusive), None) if dev.enabled else None
        if taken is not None:
            j = seen_exclusive[taken]
            problems.append(
                pos.problem(
                    (*path, taken[0]),
                    f"{taken[0]} {taken[1]} is already used by devices[{j}] ({devices_by_index[j]}); "
                    "one device, one entry",
                )
            )
        elif dev.enabled:
            seen_exclusive.update({k: i for k in dev.exclusive()})
        devices_by_index.setdefault(i, dev.id)
        names = [p.name for p in getattr(dev, "points", []) or []]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            problems.append(pos.problem((*path, "points"), f"duplicate point names: {', '.join(dupes)}"))
        if len(problems) == before:
            devices.append(dev)

    sinks: list[SinkConfig] = []
    seen_sinks: set[str] = set()
    sink_index: dict[str, int] = {}
    upstream = data.get("upstream") if isinstance(data.get("upstream"), list) else []
    for i, entry in enumerate(upstream or []):
        path = ("upstream", i)
        if not isinstance(entry, dict):
            problems.append(pos.problem(path, "an upstream entry must be a mapping with id: and type:"))
            continue
        kind = entry.get("type")
        found = validated(entry, path, plugins.sink_model, "upstream type", kind, (*path, "type"))
        if found is None:
            continue
        sink = typing.cast(SinkConfig, found)
        if sink.id in seen_sinks:
            problems.append(pos.problem((*path, "id"), f"duplicate upstream id {sink.id!r}"))
            continue
        if sink.id in reserved:
            problems.append(
                pos.problem((*path, "id"), _reserved_id("upstream id", "an upstream sink", sink.id))
            )
            continue
        seen_sinks.add(sink.id)
        sink_index[sink.id] = i
        sinks.append(sink)

    sections: dict[str, BaseModel] = {}
    for key in sorted(section_keys):
        if data.get(key) is None:
            continue
        try:
            model = plugins.section(key)
        except LookupError as exc:
            problems.append(pos.problem((key,), str(exc)))
            continue
        except ImportError as exc:
            problems.append(pos.problem((key,), f"section {key!r} is not available: {exc}"))
            continue
        try:
            sections[key] = model.model_validate(data[key])
        except ValidationError as exc:
            problems.extend(validation_problems(exc, model, (key,), pos))

    if env is not None:
        seen: set[str] = set()
        for i, c in enumerate(env.consumers):
            if c.id in seen:
                problems.append(pos.problem(("consumers", i, "id"), f"duplicate consumer id {c.id!r}"))
            seen.add(c.id)
            if c.id in reserved:
                problems.append(
                    pos.problem(("consumers", i, "id"), _reserved_id("consumer id", "a pull consumer", c.id))
                )
            if not (c.token_env or c.token_file):
                problems.append(pos.problem(("consumers", i), "a consumer needs token_env: or token_file:"))
        clash = seen & seen_sinks
        if clash:
            problems.append(
                pos.problem(
                    ("consumers",), f"ids used by both upstream and consumers: {', '.join(sorted(clash))}"
                )
            )

    warnings: list[Problem] = []
    for sink in sinks:
        said = getattr(sink, "credentials_warning", None)
        credentials = said() if callable(said) else None
        if credentials:
            warnings.append(pos.problem(("upstream", sink_index[sink.id], "url"), str(credentials)))
    if env is not None:
        recipients: list[Recipient] = []
        for sink in sinks:
            cfg = getattr(sink, "pseudonymise", None)
            if isinstance(cfg, PseudonymiseConfig):
                recipients.append((("upstream", sink_index[sink.id]), sink.id, cfg))
        recipients += [
            (("consumers", i), c.id, c.pseudonymise)
            for i, c in enumerate(env.consumers)
            if c.pseudonymise is not None
        ]
        problems.extend(_shared_keys(recipients, pos))
        warnings += _clear_warnings(recipients, pos)

    secret_paths = {p.path for p in problems if p.message.startswith("secrets are never")}
    problems = [p for p in problems if not (p.path in secret_paths and p.message.startswith("unknown key"))]
    if problems:
        problems.sort(key=lambda p: (p.line or 0, format_path(p.path)))
        raise ConfigError(problems)
    assert env is not None
    return Site(
        source=file,
        site=env.site,
        storage=env.storage,
        web=env.web,
        devices=devices,
        upstream=sinks,
        consumers=env.consumers,
        sections=sections,
        raw=data,
        privacy=env.privacy,
        clock=env.clock,
        warnings=warnings,
    )


def _reserved_id(label: str, holder: str, cid: str) -> str:
    reserved = registry().component_cursors()  # the journal cursors of the plugins' components
    return (
        f"{label} {cid!r} is the name of {reserved[cid]}'s journal cursor, which {holder} "
        f"under that id would read and move as its own; choose another id (reserved: "
        f"{', '.join(sorted(reserved))})"
    )


Recipient = tuple[Path, str, PseudonymiseConfig]  # where in the file, its id, its pseudonymise:


def _shared_keys(recipients: list[Recipient], pos: Positions) -> list[Problem]:
    """Two recipients pseudonymising with the same key could join their data: refused, naming both."""
    out: list[Problem] = []
    seen: dict[tuple[str, str], tuple[Path, str]] = {}
    for path, rid, cfg in recipients:
        if cfg.key_file:
            ref, key_name = ("key_file", os.path.realpath(cfg.key_file)), "key_file"
        else:
            ref, key_name = ("key_env", cfg.key_env or ""), "key_env"
        if ref in seen:
            other_path, other_id = seen[ref]
            out.append(
                pos.problem(
                    (*path, "pseudonymise", key_name),
                    f"{rid} uses the same pseudonym key as {other_id} ({format_path(other_path)}); "
                    "each recipient needs its own key, or the two could join their data",
                )
            )
        else:
            seen[ref] = (path, str(rid))
    return out


def _clear_warnings(recipients: list[Recipient], pos: Positions) -> list[Problem]:
    """One warning per field a recipient receives in clear (`pseudonymise.clear`)."""
    out: list[Problem] = []
    for path, rid, cfg in recipients:
        for i, name in enumerate(cfg.clear):
            out.append(
                pos.problem(
                    (*path, "pseudonymise", "clear", i),
                    f"warning: {rid} receives {name!r} in clear, not pseudonymised "
                    "(personal information leaves the site as it is)",
                )
            )
    return out


def load_site(path: str | os.PathLike[str]) -> Site:
    """Read and validate a site file. Pure-Python parsing takes about a second per MiB (the cap):
    callers on an event loop run this in a thread. A relative file path in it (`SitePath`) names a
    file beside the site file."""
    p = FsPath(path)
    try:
        text = read_yaml_text(p)
    except YamlError as exc:
        raise ConfigError(exc.problems) from None
    except FileNotFoundError:
        raise ConfigError([Problem(str(p), None, (), "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem(str(p), None, (), f"cannot read: {exc}")]) from None
    with beside(p):
        return load_site_text(text, str(p))
