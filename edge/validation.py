"""Small validation pieces shared by the site-file loader (edge.config) and the driver contract
(edge.driver): the strict model base, id and listen-address checks, secrets by reference, and the
error that lists a site file's problems. It imports neither, so both can import it."""

from __future__ import annotations

import os
from pathlib import Path as FsPath
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict

from edge.model import ID_RE, valid_event_kind
from edge.yamlpos import Problem


class ConfigError(Exception):
    """Every problem of a site file; `str()` prints one located line per problem."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class Strict(BaseModel):
    # validators are built at first use: a site never builds those of driver kinds it does not use;
    # a number of a setting is finite: `.inf`, `.nan` or 1e400 (inf) as a scale, a bound or a
    # threshold gives readings of no value or a point that stops, so it is refused, naming the key
    model_config = ConfigDict(
        extra="forbid", validate_default=True, frozen=False, defer_build=True, allow_inf_nan=False
    )


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


def resolve_secret(env: str | None, file: str | None, what: str) -> str | None:
    """The secret named by `*_env` / `*_file`; a clear error when it is named but missing."""
    if env:
        value = os.environ.get(env)
        if value is None or value == "":
            raise ConfigError(
                [Problem("environment", None, (), f"{what}: environment variable {env} is not set")]
            )
        return value
    if file:
        try:
            return FsPath(file).read_text().strip()
        except OSError as exc:
            raise ConfigError(
                [Problem(file, None, (), f"{what}: cannot read secret file: {exc.strerror}")]
            ) from None
    return None
