"""TLS with client certificates and a password file, against mosquitto configured for each: the
right credentials deliver, a wrong CA or password is refused with a status error that says why,
and nothing moves the cursor."""

from __future__ import annotations

from pathlib import Path

from tests.mqtt.broker import Subscriber, client_tls, make_certs, mqtt_sink, password_file, sink_of
from tests.mqtt.test_mqtt_sink import TOPIC, readings
from tests.support.site import running_site
from tests.support.waiting import until


async def test_tls_with_client_certificates_and_a_wrong_ca(tmp_path: Path, broker) -> None:  # type: ignore[no-untyped-def]
    certs = make_certs(tmp_path / "pki")
    b = broker(
        f"allow_anonymous true\ncafile {certs['ca_crt']}\ncertfile {certs['server_crt']}\n"
        f"keyfile {certs['server_key']}\nrequire_certificate true\n"
    )
    tls = {
        "ca_file": str(certs["ca_crt"]),
        "cert_file": str(certs["client_crt"]),
        "key_file": str(certs["client_key"]),
    }
    doc = {
        "upstream": [
            mqtt_sink(b.port, tls=tls),
            mqtt_sink(b.port, id="wrong-ca", tls={**tls, "ca_file": str(certs["other-ca_crt"])}),
            mqtt_sink(b.port, id="no-cert", tls={"ca_file": str(certs["ca_crt"])}),
        ]
    }
    async with Subscriber(b.port, tls_context=client_tls(certs)) as sub:
        async with running_site(tmp_path, doc, web=False) as rt:
            rt.hub.ingest(readings(30))
            committed = await rt.journal.flush()
            good, wrong, bare = sink_of(rt), sink_of(rt, "wrong-ca"), sink_of(rt, "no-cert")
            await until(lambda: good.cursor >= committed, 20, what="delivery over TLS")
            assert good.status()["url"].startswith("mqtts://")
            await until(
                lambda: wrong.failures >= 1 and bare.failures >= 1, 20, what="the refused ones to fail"
            )
            assert wrong.cursor == 0 and bare.cursor == 0
            assert "TLS" in wrong.last_error and "certificate verify failed" in wrong.last_error, (
                wrong.last_error
            )
            assert str(b.port) in wrong.last_error
            assert bare.last_error and bare.status()["connected"] is False
            await until(
                lambda: set(range(1, committed + 1)) <= set(sub.seqs(TOPIC)), 10, what="records over TLS"
            )


async def test_password_from_a_file(tmp_path: Path, broker) -> None:  # type: ignore[no-untyped-def]
    pwfile = password_file(tmp_path / "passwd", {"gateway": "s3cret word", "reader": "r3ad"})
    b = broker(f"allow_anonymous false\npassword_file {pwfile}\n")
    (tmp_path / "good").write_text("s3cret word\n")
    (tmp_path / "bad").write_text("guess\n")
    doc = {
        "upstream": [
            mqtt_sink(b.port, username="gateway", password_file=str(tmp_path / "good")),
            mqtt_sink(b.port, id="wrong", username="gateway", password_file=str(tmp_path / "bad")),
        ]
    }
    async with Subscriber(b.port, username="reader", password="r3ad") as sub:
        async with running_site(tmp_path, doc, web=False) as rt:
            rt.hub.ingest(readings(30))
            committed = await rt.journal.flush()
            good, wrong = sink_of(rt), sink_of(rt, "wrong")
            await until(lambda: good.cursor >= committed, 20, what="delivery with the password")
            await until(lambda: wrong.failures >= 1, 20, what="the wrong password to be refused")
            assert wrong.cursor == 0
            assert "refused the connection" in wrong.last_error, wrong.last_error
            assert "guess" not in wrong.last_error
            await until(
                lambda: set(range(1, committed + 1)) <= set(sub.seqs(TOPIC)), 10, what="records at the reader"
            )
