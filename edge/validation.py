"""Small validation pieces shared by the site-file loader (edge.config) and the driver contract
(edge.driver): the strict model base, id and listen-address checks, secrets by reference, and the
error that lists a site file's problems. It imports neither, so both can import it."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path as FsPath
from typing import Annotated, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, model_validator

from edge.model import CONTROL_RE, ID_RE, valid_event_kind
from edge.yamlpos import Problem


class ConfigError(Exception):
    """Every problem of a site file; `str()` prints one located line per problem."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


#: the folder of the site file being loaded: a relative file path in it names a file beside the
#: site file, wherever the command that reads it runs (`edge run` under systemd runs in /, a
#: technician's `edge users add` in their home: each opened its own journal and state DB)
_SITE_DIR: ContextVar[str | None] = ContextVar("site_dir", default=None)


@contextlib.contextmanager
def beside(site_file: str | os.PathLike[str]) -> Iterator[None]:
    """Within it, `SitePath` values are resolved against `site_file`'s folder."""
    token = _SITE_DIR.set(str(FsPath(site_file).resolve().parent))
    try:
        yield
    finally:
        _SITE_DIR.reset(token)


def site_relative(path: str) -> str:
    """`path` as the site file means it: a relative one joined to the folder of the site file being
    loaded (`beside`), an absolute one (or one read outside a load) as it is."""
    base = _SITE_DIR.get()
    if base is None or not path or os.path.isabs(path):
        return path
    return os.path.normpath(os.path.join(base, path))


#: a file or folder the site file names (a database, a key, a certificate, a secret)
SitePath = Annotated[str, AfterValidator(site_relative)]


class Strict(BaseModel):
    # validators are built at first use: a site never builds those of driver kinds it does not use;
    # a number of a setting is finite: `.inf`, `.nan` or 1e400 (inf) as a scale, a bound or a
    # threshold gives readings of no value or a point that stops, so it is refused, naming the key
    model_config = ConfigDict(
        extra="forbid", validate_default=True, frozen=False, defer_build=True, allow_inf_nan=False
    )

    @model_validator(mode="after")
    def _secrets_one_line(self) -> Self:
        """A token, password or HMAC secret the model names (`LINE_SECRETS`) that is there now
        must be usable as one line: refused at load (so `edge check` says so) when a control
        character is left inside it. One not there (a variable the service's environment sets,
        a file not yet installed) is left to the run, and to `edge check`'s file checks."""
        fields = type(self).model_fields
        for stem in LINE_SECRETS:
            for key in (f"{stem}_env", f"{stem}_file"):
                name = getattr(self, key, None) if key in fields else None
                if not name:
                    continue
                try:
                    value, where = _secret_text(*((name, None) if key.endswith("_env") else (None, name)))
                except OSError:
                    continue
                problem = secret_problem(value, where)
                if problem:
                    raise ValueError(f"{key}: {problem}")
        return self


def valid_id(value: str, what: str = "id") -> str:
    if not isinstance(value, str) or not ID_RE.fullmatch(value):
        raise ValueError(f"invalid {what} {value!r}: use lowercase letters, digits, '_' and '-'")
    return value


def _id_of(what: str) -> AfterValidator:
    # the error names the field the way the site file's reader knows it ("device id", ...)
    return AfterValidator(lambda v: valid_id(v, what))


DeviceId = Annotated[str, _id_of("device id")]
PointName = Annotated[str, _id_of("point name")]
ConsumerId = Annotated[str, _id_of("consumer id")]
UpstreamId = Annotated[str, _id_of("upstream id")]
ZoneName = Annotated[str, _id_of("zone name")]
EventKind = Annotated[str, AfterValidator(valid_event_kind)]  # no control characters


def valid_listen(value: object, example: str = "0.0.0.0:8080") -> str:
    """A HOST:PORT listen address (a bare number is refused with an example)."""
    text = str(value)
    _host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"invalid listen address {text!r}; expected HOST:PORT such as {example}")
    return text


class ListenAddress:
    """`host` and `port` of a model's `listen: HOST:PORT` field."""

    listen: str

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]") or "0.0.0.0"

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


# The secrets `resolve_secret` serves, by the stem of their `*_env` / `*_file` keys: each goes into
# an HTTP header or a protocol field as one line (a token, a password, an HMAC key). PEM keys and
# binary key files (`key_file`, `client_key`) are read otherwise.
LINE_SECRETS = ("token", "password", "hmac_secret")


def _secret_text(env: str | None, file: str | None) -> tuple[str | None, str]:
    """(the secret with its surrounding whitespace stripped, where it came from) as named by
    `env` or `file`; (None, where) when the variable is not set. OSError when the file cannot be
    read. A trailing newline (`echo` into a file, a Kubernetes or Docker secret, `$(cat file)`) is
    no part of the secret, whichever way it comes."""
    if env:
        value = os.environ.get(env)
        return (value.strip() if value is not None else None), f"environment variable {env}"
    assert file
    return FsPath(file).read_text().strip(), f"file {file}"


def secret_problem(value: str | None, where: str) -> str | None:
    """Why `value` (stripped) cannot serve as a one-line secret, never showing it: a control
    character left inside it (two lines pasted into a variable, a tab)."""
    if value is None:
        return None
    bad = CONTROL_RE.search(value)
    if bad is None:
        return None
    return (
        f"the secret in {where} holds a control character (U+{ord(bad.group()):04X} at character "
        f"{bad.start() + 1} of {len(value)}); a secret is one line of printable characters"
    )


def resolve_secret(env: str | None, file: str | None, what: str) -> str | None:
    """The secret named by `*_env` / `*_file`, its surrounding whitespace stripped; a clear error
    when it is named but missing, empty, or holds a control character."""
    if not env and not file:
        return None
    try:
        value, where = _secret_text(env, file)
    except OSError as exc:
        raise ConfigError(
            [Problem(str(file), None, (), f"{what}: cannot read secret file: {exc.strerror}")]
        ) from None
    source = "environment" if env else str(file)
    if env and not value:
        state = "is not set" if os.environ.get(env) is None else "is empty"
        raise ConfigError([Problem(source, None, (), f"{what}: environment variable {env} {state}")])
    problem = secret_problem(value, where)
    if problem:
        raise ConfigError([Problem(source, None, (), f"{what}: {problem}")])
    return value
