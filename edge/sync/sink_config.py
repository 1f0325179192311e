"""Configuration keys every push sink shares (an upstream entry), and its TLS context."""

from __future__ import annotations

import ssl
from typing import ClassVar
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, field_validator

from edge.config import SinkConfig
from edge.model import Privacy
from edge.privacy.pseudonym import PseudonymiseConfig
from edge.store.records import IncludeConfig
from edge.units import Duration, Size
from edge.validation import SitePath, Strict

MAX_IN_FLIGHT = 16  # batches a sink may send at once; the window a crash can replay


MAX_BATCH_BYTES = 64 * 1024 * 1024


class BatchConfig(Strict):
    # the most records in one batch; a sink starts at 5000 (or this, if smaller) and grows its
    # batches towards it when the link's round trip dominates (edge.sync.window.BatchSizer)
    max_items: int = Field(50_000, ge=1, le=100_000)
    max_age: Duration = 2.0
    # the most encoded bytes (before gzip) in one batch, estimated from recent records
    max_bytes: Size = 4 * 1024 * 1024

    @field_validator("max_bytes")
    @classmethod
    def _bytes(cls, v: int) -> int:
        if not 64 * 1024 <= v <= MAX_BATCH_BYTES:
            raise ValueError(f"{v} bytes is out of range; expected 64KiB to 64MiB (encoded, before gzip)")
        return v


class TimeoutConfig(Strict):
    connect: Duration = 5.0
    total: Duration = 30.0


class RetryConfig(Strict):
    initial: Duration = 1.0
    max: Duration = 300.0  # backoff cap (a server's Retry-After may ask for longer: it is a floor)
    probe_every: Duration = 5.0  # after a connection failure, test the link this often


class PushSinkConfig(SinkConfig):
    """Keys every push sink shares (see docs/sync.md)."""

    url: str
    token_env: str | None = None
    token_file: SitePath | None = None
    batch: BatchConfig = Field(default_factory=lambda: BatchConfig.model_validate({}))
    ca_file: SitePath | None = None
    client_cert: SitePath | None = None
    client_key: SitePath | None = None
    verify_tls: bool = True
    max_bytes_per_s: Size | None = None
    include: IncludeConfig = Field(default_factory=lambda: IncludeConfig.model_validate({}))
    max_privacy: Privacy = Privacy.PERSONAL
    # this sink's own pseudonym key, extra fields and fields it sees in clear; without it the
    # identifying fields of the shipped event kinds are withheld from this sink (docs/privacy.md)
    pseudonymise: PseudonymiseConfig | None = None
    timeout: TimeoutConfig = Field(default_factory=lambda: TimeoutConfig.model_validate({}))
    retry: RetryConfig = Field(default_factory=lambda: RetryConfig.model_validate({}))
    gzip_level: int = Field(6, ge=0, le=9)
    # batches sent at once; above 1 they may arrive out of seq order (docs/sync.md)
    max_in_flight: int = 1

    #: where this sink type takes the credentials a URL must not carry (said when one does)
    credentials_hint: ClassVar[str] = (
        "give the receiver's token by reference: token_env: VARIABLE or token_file: PATH "
        "(sent as Authorization: Bearer)"
    )

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        parts = urlsplit(v)
        # USER:PASSWORD@ is a secret in the site file: `edge check` warns (`credentials_warning`),
        # the status never shows it; a site file of an earlier release that has one keeps working
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"invalid url {v!r}; expected http://HOST[:PORT]/PATH or https://...")
        return v

    def credentials_warning(self) -> str | None:
        """What `edge check` says of a url carrying USER:PASSWORD@ (never repeating them): sent as
        the receiver's credentials, but a secret written in the site file."""
        parts = urlsplit(self.url)
        if parts.username is None and parts.password is None:
            return None
        return (
            f"warning: url carries a user name or password (USER:PASSWORD@ before "
            f"{parts.netloc.rpartition('@')[2]}): sent as the receiver's credentials, but secrets "
            f"are not to be written in the site file and a later release will refuse it: remove it "
            f"and {self.credentials_hint}"
        )

    @field_validator("max_bytes_per_s")
    @classmethod
    def _rate(cls, v: int | None) -> int | None:
        if v is not None and v < 1024:
            raise ValueError(f"max_bytes_per_s {v} is too small; at least 1KiB")
        return v

    @field_validator("max_in_flight")
    @classmethod
    def _in_flight(cls, v: int) -> int:
        if not 1 <= v <= MAX_IN_FLIGHT:
            raise ValueError(
                f"max_in_flight {v} is out of range; expected 1 to {MAX_IN_FLIGHT} batches sent at once"
            )
        return v


def without_userinfo(url: str) -> str:
    """`url` without a user name or password (`USER:PASSWORD@`) in its authority, the rest as it
    is: what a status or a message may show of a sink's URL."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=host))


def ssl_context(cfg: PushSinkConfig) -> ssl.SSLContext | None:
    """TLS for https URLs: verification on unless `verify_tls: false`, custom CA, client cert."""
    if urlsplit(cfg.url).scheme != "https":
        return None
    ctx = ssl.create_default_context(cafile=cfg.ca_file)
    if cfg.client_cert:
        ctx.load_cert_chain(cfg.client_cert, cfg.client_key)
    if not cfg.verify_tls:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx
