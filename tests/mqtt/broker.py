"""A real mosquitto on 127.0.0.1 for the MQTT tests, and a subscriber that counts what arrives."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import signal
import socket
import ssl
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from tests.support.ports import free_port
from tests.support.procs import stop_process
from tests.support.tools import require_tool
from tests.support.waiting import until_sync


class Broker:
    """mosquitto with a config this test writes; restartable on the same port, stopped by PID."""

    def __init__(self, workdir: Path, *, extra: str = "", port: int = 0) -> None:
        self.exe = require_tool("mosquitto", "Debian package mosquitto")
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.conf = self.dir / "mosquitto.conf"
        self.log = self.dir / "mosquitto.log"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            # as root mosquitto would switch to its own user, which cannot write the test's directory
            f"user {getpass.getuser()}\n"
            "persistence true\n"
            f"persistence_location {self.dir}/\n"
            "log_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\n"
            "max_inflight_messages 0\nmax_queued_messages 0\n" + (extra or "allow_anonymous true\n")
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        log = self.log.open("ab")
        self.proc = subprocess.Popen([self.exe, "-c", str(self.conf)], stdout=log, stderr=log)
        log.close()
        proc = self.proc

        def listening() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited {proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            except OSError:
                return False
            return True

        until_sync(listening, 15, what=f"mosquitto to listen on {self.port}")

    def stop(self) -> None:
        """SIGTERM (mosquitto writes its persistence file) and reap."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                stop_process(self.proc)
        self.proc = None

    def kill(self) -> None:
        stop_process(self.proc)
        self.proc = None

    def freeze(self) -> None:
        """SIGSTOP: the socket stays open but nothing is answered (no PUBACK)."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def restart(self) -> None:
        self.stop()
        self.start()


class Subscriber:
    """A plain aiomqtt client subscribed at QoS 1 (persistent session, reconnecting) that keeps
    every message that arrives, in order."""

    def __init__(
        self, port: int, topic: str = "#", *, client_id: str = "test-subscriber", **client: Any
    ) -> None:
        self.port = port
        self.topic = topic
        self.client_id = client_id
        self.client_args = client
        self.messages: list[tuple[str, bytes, bool]] = []
        self.subscribed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Subscriber:
        self.task = asyncio.create_task(self._run())
        async with asyncio.timeout(15):
            await self.subscribed.wait()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task

    async def _run(self) -> None:
        import aiomqtt

        while True:
            try:
                # a session that outlives the connection: MQTT 5 says so with clean_start and an
                # expiry interval, 3.1.1 with clean_session
                session: dict[str, Any] = (
                    {"clean_start": False}
                    if self.client_args.get("protocol") == aiomqtt.ProtocolVersion.V5
                    else {"clean_session": False}
                )
                async with aiomqtt.Client(
                    "127.0.0.1",
                    self.port,
                    identifier=self.client_id,
                    timeout=5,
                    **session,
                    **self.client_args,
                ) as client:
                    await client.subscribe(self.topic, qos=1)
                    self.subscribed.set()
                    async for msg in client.messages:
                        payload = msg.payload if isinstance(msg.payload, bytes) else str(msg.payload).encode()
                        self.messages.append((str(msg.topic), payload, bool(msg.retain)))
            except aiomqtt.MqttError:
                await asyncio.sleep(0.05)  # the broker is restarting: try again shortly

    def on(self, topic: str) -> list[bytes]:
        return [p for t, p, _ in self.messages if t == topic]

    def says(self, topic: str, payload: bytes, after: int) -> Callable[[], bool]:
        """A condition: `payload` arrived on `topic` after the first `after` messages there."""
        return lambda: payload in self.on(topic)[after:]

    def grown(self, topic: str, n: int) -> Callable[[], bool]:
        """A condition: `n` more records arrived on `topic` than now."""
        start = len(self.seqs(topic))
        return lambda: len(self.seqs(topic)) >= start + n

    def seqs(self, topic: str) -> list[int]:
        """Every record seq in the json-format messages on `topic`, in arrival order (a message
        arrives whole: its readings and events in seq order)."""
        out: list[int] = []
        for payload in self.on(topic):
            doc = orjson.loads(payload)
            out.extend(sorted(r["seq"] for r in doc["readings"] + doc["events"]))
        return out

    def counts(self, topic: str) -> Counter[int]:
        return Counter(self.seqs(topic))


def mqtt_sink(port: int, **extra: object) -> dict[str, object]:
    """An `upstream:` entry: mqtt sink "central" to the broker on `port`, small quick batches,
    short retries; `extra` replaces or adds keys."""
    cfg: dict[str, object] = {
        "id": "central",
        "type": "mqtt",
        "host": "127.0.0.1",
        "port": port,
        "batch": {"max_items": 50, "max_age": "50ms"},
        "retry": {"initial": "50ms", "max": "500ms", "probe_every": "100ms"},
        "timeout": {"connect": "2s", "total": "5s"},
    }
    cfg.update(extra)
    return cfg


def make_certs(d: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, with openssl; and a
    second, unrelated CA."""
    openssl = require_tool("openssl", "Debian package openssl")
    d.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True, cwd=d, timeout=60)

    for ca in ("ca", "other-ca"):
        run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={ca}",
            "-keyout", f"{ca}.key", "-out", f"{ca}.crt")  # fmt: skip
    ext = d / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    for name in ("server", "client"):
        run("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}.key",
            "-out", f"{name}.csr")  # fmt: skip
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-extfile", str(ext), "-out", f"{name}.crt")  # fmt: skip
    return {p.stem + p.suffix.replace(".", "_"): p for p in d.iterdir()}


def password_file(path: Path, users: dict[str, str]) -> Path:
    """A mosquitto password file made by `mosquitto_passwd` (hashed, as an operator makes it)."""
    tool = require_tool("mosquitto_passwd", "Debian package mosquitto")
    path.touch()
    for user, password in users.items():
        subprocess.run([tool, "-b", str(path), user, password], check=True, capture_output=True, timeout=30)
    return path


def client_tls(certs: dict[str, Path]) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(certs["ca_crt"]))
    ctx.load_cert_chain(str(certs["client_crt"]), str(certs["client_key"]))
    return ctx


def sink_of(rt: Any, sink_id: str = "central") -> Any:
    return rt.components["sync"].sinks[sink_id]


def all_arrived(sub: Subscriber, topic: str, upto: int) -> Callable[[], bool]:
    return lambda: set(range(1, upto + 1)) <= set(sub.seqs(topic))
