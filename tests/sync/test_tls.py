"""HTTPS sinks: verification on by default, a custom CA, and client certificates (mTLS), against a
real receiver process serving TLS with certificates made by openssl for this test."""

from __future__ import annotations

import ssl
import subprocess
import time
from pathlib import Path

import pytest

from edge.model import Reading
from tests.support.site import running_site
from tests.support.tools import require_tool
from tests.sync.helpers import wait_for


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    openssl = require_tool("openssl")
    d = tmp_path / "pki"
    d.mkdir()

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=d, check=True, capture_output=True, timeout=60)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=test-ca")  # fmt: skip
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for name in ("server", "client"):
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", f"/CN={name}")  # fmt: skip
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.pem", "-days", "2", "-extfile", "san.ext")  # fmt: skip
    return d


def https_sink(url: str, **extra: object) -> dict[str, object]:
    return {
        "id": "central",
        "type": "http",
        "url": url,
        "batch": {"max_items": 10, "max_age": "20ms"},
        "retry": {"initial": "20ms", "max": "200ms"},
        **extra,
    }


async def test_mtls_with_custom_ca(tmp_path: Path, pki: Path, receiver) -> None:  # type: ignore[no-untyped-def]
    me = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    me.load_cert_chain(str(pki / "client.pem"), str(pki / "client.key"))
    rx = receiver(
        "--tls-cert", str(pki / "server.pem"), "--tls-key", str(pki / "server.key"), "--client-ca", str(pki / "ca.pem"),
        client_ssl=me,
    )  # fmt: skip
    url = rx.url
    assert url.startswith("https://")
    doc = {
        "upstream": [
            https_sink(
                url,
                ca_file=str(pki / "ca.pem"),
                client_cert=str(pki / "client.pem"),
                client_key=str(pki / "client.key"),
            ),
            # verification is on by default: the test CA is unknown to the system store
            https_sink(
                url, id="no-ca", client_cert=str(pki / "client.pem"), client_key=str(pki / "client.key")
            ),
            # the receiver requires a client certificate
            https_sink(url, id="no-cert", ca_file=str(pki / "ca.pem")),
        ]
    }
    async with running_site(tmp_path, doc) as rt:
        rt.hub.ingest([Reading(time.time(), "dev.p", float(i)) for i in range(20)])
        committed = await rt.journal.flush()
        sinks = rt.components["sync"].sinks
        await wait_for(lambda: sinks["central"].cursor >= committed, 15, "delivery over mTLS")
        await wait_for(
            lambda: sinks["no-ca"].failures >= 2 and sinks["no-cert"].failures >= 2, 15, "TLS failures"
        )
        assert sinks["no-ca"].cursor == 0 and "certificate" in sinks["no-ca"].last_error.lower()
        assert sinks["no-cert"].cursor == 0
        assert sinks["no-ca"].status()["dead_letters"] == sinks["no-cert"].status()["dead_letters"] == 0
    assert len({q for e in await rx.accepted() for q in e["seqs"]}) == committed
