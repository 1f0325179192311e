"""`edge run` imports aiohttp with its default TLS contexts holding no CA certificate until a
handshake needs one (OpenSSL finds it in the hashed certificate directory then): the bundle read
into both contexts cost 2 MB for as long as the gateway ran. What is trusted does not change: a
default aiohttp session (a rule's webhook) still reaches a server whose CA is in the directory and
still refuses one whose CA is not, and the contexts made later (an https sink's) read the bundle."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edge.service import HASH_LINK
from tests.core.test_service import SITE
from tests.support.site import site_file
from tests.support.tools import require_tool
from tests.sync.test_tls import pki  # noqa: F401  (the fixture: a test CA and a server certificate)

ROOT = Path(__file__).resolve().parents[2]

# A default aiohttp session against two local https servers: one whose certificate the test CA
# signed (the CA is in SSL_CERT_DIR), one self-signed. With "as-system", the test's directory
# stands in for the one compiled into OpenSSL (which only root could add the test CA to).
REQUESTS = textwrap.dedent(
    """
    import asyncio, os, ssl, sys
    if sys.argv[2] == "as-system":
        real = ssl.get_default_verify_paths
        ssl.get_default_verify_paths = lambda: real()._replace(openssl_capath=os.environ["SSL_CERT_DIR"])
    from edge import service  # as `edge run` does before it reads the site file

    print("DEFERRED", service.CA_ON_DEMAND)
    import aiohttp, aiohttp.connector
    from aiohttp import web

    print("HELD", aiohttp.connector._SSL_CONTEXT_VERIFIED.cert_store_stats()["x509_ca"])
    print("ENV", "SSL_CERT_FILE" in os.environ)
    print("LATER", ssl.create_default_context().cert_store_stats()["x509_ca"])

    async def serve(cert, key):
        app = web.Application()
        app.router.add_get("/", lambda request: web.Response(text="ok"))
        runner = web.AppRunner(app)
        await runner.setup()
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(cert, key)
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
        await site.start()
        return runner, site._server.sockets[0].getsockname()[1]

    async def main():
        pki = sys.argv[1]
        trusted, port = await serve(f"{pki}/server.pem", f"{pki}/server.key")
        stranger, other = await serve(f"{pki}/self.pem", f"{pki}/self.key")
        async with aiohttp.ClientSession() as session:
            async with session.get(f"https://127.0.0.1:{port}/") as resp:
                print("TRUSTED", resp.status, await resp.text())
            try:
                async with session.get(f"https://127.0.0.1:{other}/") as resp:
                    print("STRANGER", resp.status)
            except aiohttp.ClientConnectorCertificateError:
                print("STRANGER refused")
        await trusted.cleanup()
        await stranger.cleanup()

    asyncio.run(main())
    """
)


def bundle_size() -> int:
    """CA certificates a default context reads from this host's bundle (0 without one)."""
    return int(ssl.create_default_context().cert_store_stats()["x509_ca"])


@pytest.fixture
def ca_dir(pki: Path) -> Path:  # noqa: F811
    """A hashed certificate directory holding the test CA alone (as /etc/ssl/certs holds the
    system's), and a self-signed server certificate no CA there vouches for."""
    openssl = require_tool("openssl")
    d = pki / "certs"
    d.mkdir()
    (d / "ca.pem").write_bytes((pki / "ca.pem").read_bytes())
    subprocess.run([openssl, "rehash", str(d)], check=True, capture_output=True, timeout=60)
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "self.key", "-out", "self.pem",
         "-days", "2", "-subj", "/CN=self", "-addext", "subjectAltName=IP:127.0.0.1"],
        cwd=pki, check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return d


def child_env(cert_dir: Path | None = None, cert_file: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR")}
    if cert_dir is not None:
        env["SSL_CERT_DIR"] = str(cert_dir)
    if cert_file is not None:
        env["SSL_CERT_FILE"] = cert_file
    return env


def requests(certs: Path, env: dict[str, str], as_system: bool = True) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", REQUESTS, str(certs), "as-system" if as_system else "-"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


@pytest.mark.parametrize("named", [False, True], ids=["no-SSL_CERT_FILE", "SSL_CERT_FILE-the-system-bundle"])
def test_default_contexts_hold_no_ca_and_still_verify(pki: Path, ca_dir: Path, named: bool) -> None:  # noqa: F811
    system = ssl.get_default_verify_paths().openssl_cafile
    lines = requests(pki, child_env(ca_dir, system if named else None))
    assert lines == [
        "DEFERRED True",
        "HELD 0",
        f"ENV {named}",
        f"LATER {bundle_size()}",
        "TRUSTED 200 ok",
        "STRANGER refused",
    ]


def test_a_bundle_of_the_operators_own_is_read_as_before(pki: Path, ca_dir: Path) -> None:  # noqa: F811
    """SSL_CERT_FILE naming another bundle: its CAs may be missing from the directory."""
    lines = requests(pki, child_env(ca_dir, str(pki / "ca.pem")))
    assert lines == ["DEFERRED False", "HELD 1", "ENV True", "LATER 1", "TRUSTED 200 ok", "STRANGER refused"]


def test_a_directory_of_the_operators_own_leaves_the_bundle_read_as_before(pki: Path, ca_dir: Path) -> None:  # noqa: F811
    """SSL_CERT_DIR naming another directory: the bundle's CAs may be missing from it."""
    held = bundle_size()
    lines = requests(pki, child_env(ca_dir), as_system=False)
    assert lines == [
        "DEFERRED False",
        f"HELD {held}",
        "ENV False",
        f"LATER {held}",
        "TRUSTED 200 ok",
        "STRANGER refused",
    ]


# `serve` as `edge run` calls it; once the site is up, the number of CA certificates aiohttp's
# default context holds, then the service stops as systemd stops it
RUN = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from edge import service

    def ready(rt):
        import aiohttp.connector
        print("HELD", aiohttp.connector._SSL_CONTEXT_VERIFIED.cert_store_stats()["x509_ca"], flush=True)
        os.kill(os.getpid(), signal.SIGTERM)

    sys.exit(asyncio.run(service.serve(sys.argv[1], check=lambda site: [], on_ready=ready)))
    """
)


def test_edge_run_starts_with_no_ca_in_aiohttp(tmp_path: Path) -> None:
    """This host's own bundle and directory, as a service started by systemd has them."""
    if bundle_size() == 0:
        pytest.skip("this host has no CA bundle: its contexts hold none either way")
    capath = ssl.get_default_verify_paths().openssl_capath
    if not any(HASH_LINK.fullmatch(name) for name in os.listdir(capath)):
        pytest.skip(f"{capath} has no hash links: the bundle is read as before")
    config = site_file(tmp_path, SITE)
    out = subprocess.run(
        [sys.executable, "-c", RUN, str(config)],
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "HELD 0" in out.stdout.splitlines(), out.stdout
