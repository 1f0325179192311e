"""A real upstream receiver for the sync tests, run as its own process: `python receiver.py ...`.

It accepts the native batch format, can fail at random (500, 429 + Retry-After, hanging past
the client's timeout, connection resets, slow reads), rejects poison records with 400, checks a
bearer token and an HMAC signature when told to, and logs every request. It prints `PORT <n>`
once it listens. Control: `GET /log` (every request, in arrival order), `POST /control` with
{"fail": p, "poison": [...]}.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import random
import ssl
import sys
import time
import zlib
from typing import Any

import orjson
from aiohttp import web

MODES = ("500", "429", "hang", "reset", "slow")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--fail", type=float, default=0.0, help="probability of a failure mode per request")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--hang", type=float, default=5.0)
    ap.add_argument("--retry-after", default="1", help="the Retry-After header of the 429 mode")
    ap.add_argument("--poison", action="append", default=[], help="reject any batch holding this point (400)")
    ap.add_argument("--token", default=None)
    ap.add_argument("--hmac-secret", default=None)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--tls-cert", default=None, help="serve HTTPS with this certificate (and --tls-key)")
    ap.add_argument("--tls-key", default=None)
    ap.add_argument("--client-ca", default=None, help="require client certificates signed by this CA")
    ap.add_argument("--cycle", action="store_true", help="take the failure modes in turn, not at random")
    args = ap.parse_args()
    rnd = random.Random(args.seed)
    state = {"fail": args.fail, "poison": set(args.poison), "modes": args.modes.split(",")}
    log: list[dict[str, Any]] = []

    async def ingest(request: web.Request) -> web.StreamResponse:
        entry: dict[str, Any] = {
            "instance": request.headers.get("X-Edge-Instance", ""),
            "key": request.headers.get("Idempotency-Key", ""),
            "outcome": "?",
            "t": time.monotonic(),  # arrival, for the spacing of retries
        }
        log.append(entry)
        if args.token and request.headers.get("Authorization") != f"Bearer {args.token}":
            entry["outcome"] = "401"
            return web.Response(status=401, text="bad token")
        if state["fail"] and rnd.random() < state["fail"]:
            if args.cycle:
                mode = state["modes"][state.setdefault("turn", 0) % len(state["modes"])]
                state["turn"] += 1
            else:
                mode = rnd.choice(state["modes"])
            entry["outcome"] = mode
            if mode == "500":
                return web.Response(status=500, text="injected failure")
            if mode == "429":
                return web.Response(status=429, headers={"Retry-After": args.retry_after}, text="slow down")
            if mode == "hang":
                await asyncio.sleep(args.hang)
                return web.Response(status=500, text="too late")
            if mode == "reset":
                assert request.transport is not None
                request.transport.abort()
                return web.Response(status=500)
            # slow: read the body slowly, then accept it
            await asyncio.sleep(0.3)
        wire = await request.read()  # the server runs with auto_decompress=False: bytes as sent
        raw = zlib.decompress(wire, 47) if request.headers.get("Content-Encoding") == "gzip" else wire
        if args.hmac_secret:
            expected = "sha256=" + hmac.new(args.hmac_secret.encode(), wire, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(expected, request.headers.get("X-Edge-Signature", "")):
                entry["outcome"] = "bad-signature"
                return web.Response(status=401, text="bad signature")
            entry["signed"] = True
        doc = orjson.loads(raw)
        bad = [r for r in doc["readings"] if r["point"] in state["poison"]]
        if bad:
            entry["outcome"] = "400"
            entry["poison"] = [r["seq"] for r in bad]
            return web.Response(status=400, text=f"rejected {len(bad)} poison record(s)")
        seqs = sorted([r["seq"] for r in doc["readings"]] + [e["seq"] for e in doc["events"]])
        if entry["outcome"] == "?":
            entry["outcome"] = "ok"
        else:
            entry["outcome"] += "-ok"
        entry.update(first=doc["first_seq"], last=doc["last_seq"], seqs=seqs, gateway=doc["gateway"])
        entry["points"] = sorted({r["point"] for r in doc["readings"]})
        entry["kinds"] = sorted({e["kind"] for e in doc["events"]})
        return web.Response(status=204)

    async def get_log(request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(log), content_type="application/json")

    async def control(request: web.Request) -> web.Response:
        body = await request.json()
        if "fail" in body:
            state["fail"] = float(body["fail"])
        if "poison" in body:
            state["poison"] = set(body["poison"])
        return web.json_response({"ok": True})

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/ingest", ingest)
    app.router.add_get("/log", get_log)
    app.router.add_post("/control", control)

    async def run() -> None:
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5, auto_decompress=False)
        await runner.setup()
        ssl_ctx = None
        if args.tls_cert:
            ssl_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ssl_ctx.load_cert_chain(args.tls_cert, args.tls_key)
            if args.client_ca:
                ssl_ctx.load_verify_locations(args.client_ca)
                ssl_ctx.verify_mode = ssl.CERT_REQUIRED
        site = web.TCPSite(runner, "127.0.0.1", args.port, reuse_address=True, ssl_context=ssl_ctx)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        print(f"PORT {port}", flush=True)
        await asyncio.Event().wait()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
