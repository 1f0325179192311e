"""Footprint benchmark: memory and CPU of a real `edge run` on a small site, beside the floor of a
bare interpreter that imports the same modules, measured in the same run.

    python -m bench.footprint [--quick | --minutes N] [--profile] [--plain]

The site: 10 CHINT DTSU666 meters over Modbus TCP polled every second (the simulated meters of
`edge demo`, one pymodbus server each, in a child process), one HTTP upstream to a local receiver
(bench.sync's, in its own process), the web UI listening and idle. The gateway is sampled every
half second: RSS, VmHWM (its peak RSS since start) and CPU time. The floor is a fresh interpreter
that imports every module the gateway had loaded (written by the gateway at exit) and does
nothing else. Both load the project's modules as compiled bytecode, as an installed package does
(compiled first into the checkout's __pycache__).
Targets for this workload: steady RSS <= 45 MB, peak <= 60 MB.

Every run reports the RSS slope in MB per minute (least squares over the samples after the first
minute, or after the first half of a shorter run): a gateway runs for months, and anything that
grows without bound shows here first. `--minutes N` runs the site N minutes (5 or more tells a
creep from caches still filling up).

The gateway and the floor run with `python -OO` (docstrings and asserts left out of the loaded
code), as the service runs (PYTHONOPTIMIZE=2 in its unit, its bytecode compiled at install);
--plain runs both without it, as `edge run` typed in a shell does.

--profile runs the site a second time with tracemalloc and `-X importtime` on (slower, more
memory: its figures are not the benchmark's) and prints the largest allocation sites and
packages, the gateway's slowest imports, and what importing each package costs in RSS on its own.

The last line is one JSON object with the figures and "ratio" = steady RSS / floor RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from bench.modbus import free_port
from bench.sync import start_receiver

ROOT = Path(__file__).resolve().parent.parent
METERS = 10
SAMPLE_EVERY = 0.5
TARGET_STEADY_MB = 45.0
TARGET_PEAK_MB = 60.0
MB = 1e6

# Runs `edge run -c SITE` exactly as the console script does, and at exit writes the names of the
# loaded modules (the floor imports the same ones). With --profile it also snapshots tracemalloc
# on SIGUSR1 while the site runs.
GATEWAY = """
import atexit, sys
site, modules_out, snapshot_out = sys.argv[1:4]
atexit.register(lambda: open(modules_out, "w").write("\\n".join(sorted(sys.modules))))
if snapshot_out:
    import signal, tracemalloc
    signal.signal(signal.SIGUSR1, lambda *_: tracemalloc.take_snapshot().dump(snapshot_out))
from edge.cli import main
sys.exit(main(["run", "-c", site, "--log-level", "warning"]))
"""

# The floor: import the gateway's modules (those a fresh interpreter can import on their own) and
# report the same two figures. edge.plugins first, as `edge run` imports it before anything builds
# a pydantic model: it decides which plugin loader pydantic gets, and so whether importlib.metadata
# is loaded at all; then edge.service, as `edge run` imports it before aiohttp: it decides whether
# aiohttp's default TLS contexts read the CA bundle (2 MB) at import.
FLOOR = """
import importlib, json, sys
names = open(sys.argv[1]).read().split()
for first in ("edge.plugins", "edge.service"):
    if first in names:
        importlib.import_module(first)
for name in names:
    if name not in sys.modules and name != "__main__":
        try:
            importlib.import_module(name)
        except Exception:
            pass
status = open("/proc/self/status").read()
print(json.dumps({k: int(l.split()[1]) * 1024 for l in status.splitlines()
                  for k in ("VmRSS", "VmHWM", "RssFile") if l.startswith(k + ":")}))
"""

# What importing one package costs on its own: RSS after `import NAME` minus a bare interpreter's.
# Shared dependencies count in every package that pulls them in, so the figures overlap.
IMPORT_COST = """
import importlib, json, sys
def rss():
    return next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmRSS:"))
before = rss()
importlib.import_module(sys.argv[1])
print(rss() - before)
"""


#: the interpreter and its flags for the gateway and the floor (-OO unless `--plain`)
PYTHON = [sys.executable]


def compile_project(optimize: bool = False) -> None:
    """The project's modules as compiled bytecode, beside their sources (__pycache__, ignored by
    git), as on a box where the package was installed (pip compiles it then): a checkout run with
    PYTHONDONTWRITEBYTECODE compiles every module at each start, and the compiler's memory is no
    part of a gateway's footprint. Third-party packages and the standard library have theirs,
    except for -OO, which pip does not compile: with `optimize` the installed packages are compiled
    at that level too, as install.sh does for the service (the standard library's own here has
    them already)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    extra = ["-o", "2", sysconfig.get_paths()["purelib"]] if optimize else []
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", *extra, "edge", "drivers", "rules"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )


# ---------------------------------------------------------------- the meters
def serve_meters(n: int) -> None:
    """n simulated DTSU666 meters (unit 1 of the demo's field device simulator), one TCP port each;
    prints `PORTS p1,p2,...` once all listen, then serves until killed."""
    import logging

    from drivers.modbus.simulator import FieldDeviceSimulator

    logging.disable(logging.WARNING)

    async def run() -> None:
        sims = [FieldDeviceSimulator("127.0.0.1", 0, seed=i + 1, vehicle_arrivals=None) for i in range(n)]
        ports = [await s.start() for s in sims]
        print("PORTS " + ",".join(map(str, ports)), flush=True)
        await asyncio.Event().wait()

    asyncio.run(run())


def start_meters(n: int) -> tuple[subprocess.Popen[str], list[int]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.footprint", "--serve-meters", str(n)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("PORTS "):
        proc.kill()
        raise SystemExit(f"meter simulators did not start: {line!r}")
    return proc, [int(p) for p in line.split()[1].split(",")]


# ---------------------------------------------------------------- the gateway
def site_doc(tmp: Path, meter_ports: list[int], upstream: str, web_port: int) -> dict[str, Any]:
    return {
        "site": {"id": "footprint", "name": "footprint benchmark"},
        "storage": {"path": str(tmp / "edge.db")},
        "web": {"listen": f"127.0.0.1:{web_port}"},
        "devices": [
            {
                "id": f"meter-{i + 1}",
                "driver": "modbus",
                "profile": "chint-dtsu666",
                "connection": {"transport": "tcp", "host": "127.0.0.1", "port": port},
                "unit": 1,
                "poll": "1s",
            }
            for i, port in enumerate(meter_ports)
        ],
        "upstream": [{"id": "central", "type": "http", "url": upstream}],
    }


def proc_memory(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM and RssFile (the part of RSS that is mapped files: shared libraries, shareable
    with other processes) of `pid`, in bytes."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssFile"):
            fields[key] = int(rest.split()[0]) * 1024
    return fields


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_healthy(port: int, gateway: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if gateway.poll() is not None:
            raise SystemExit(f"edge run exited with {gateway.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"edge run did not answer /healthz within 60 s:\n{log.read_text()[-3000:]}")


def received_rows(upstream: str) -> int:
    with urllib.request.urlopen(upstream.replace("/ingest", "/stats"), timeout=5) as r:
        return int(json.loads(r.read())["rows"])


def run_gateway(
    tmp: Path, meter_ports: list[int], upstream: str, seconds: float, snapshot: Path | None = None
) -> dict[str, Any]:
    """Run the site for `seconds` after it is up, sampling the gateway; stop it with SIGTERM."""
    web_port = free_port()
    site = tmp / "site.yaml"
    site.write_text(yaml.safe_dump(site_doc(tmp, meter_ports, upstream, web_port), sort_keys=False))
    modules = tmp / "modules.txt"
    log = tmp / "edge.log"
    env = dict(os.environ)
    if snapshot is not None:
        env["PYTHONTRACEMALLOC"] = "1"  # from the first import on
    importtime = ["-X", "importtime"] if snapshot else []
    with open(log, "w") as out:
        gateway = subprocess.Popen(
            [*PYTHON, *importtime, "-c", GATEWAY, str(site), str(modules), str(snapshot or "")],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        started = time.monotonic()
        wait_healthy(web_port, gateway, log)
        startup_s = time.monotonic() - started
        rows0 = received_rows(upstream)
        cpu0, t0 = cpu_seconds(gateway.pid), time.monotonic()
        samples: list[tuple[float, int, int]] = []  # (seconds since t0, rss, hwm)
        while (now := time.monotonic()) - t0 < seconds:
            mem = proc_memory(gateway.pid)
            samples.append((now - t0, mem["VmRSS"], mem["VmHWM"]))
            time.sleep(SAMPLE_EVERY)  # the sampling period itself
        cpu = cpu_seconds(gateway.pid) - cpu0
        wall = time.monotonic() - t0
        rows = received_rows(upstream) - rows0
        end = proc_memory(gateway.pid)
        if snapshot is not None:
            gateway.send_signal(signal.SIGUSR1)
            deadline = time.monotonic() + 60
            while not snapshot.exists() and time.monotonic() < deadline:
                time.sleep(0.1)
        gateway.send_signal(signal.SIGTERM)
        gateway.wait(timeout=60)
    finally:
        if gateway.poll() is None:
            gateway.kill()
            gateway.wait()
    if rows <= 0:
        raise SystemExit(f"the receiver got nothing from the gateway:\n{log.read_text()[-3000:]}")
    steady = [rss for t, rss, _ in samples if t >= seconds / 2]  # after the first half
    return {
        "startup_s": round(startup_s, 2),
        "steady_rss_mb": round(statistics.median(steady) / MB, 1),
        "max_rss_mb": round(max(rss for _, rss, _ in samples) / MB, 1),
        "rss_slope_mb_per_min": rss_slope(samples, min(60.0, seconds / 2)),
        "rss_at_up_mb": round(samples[0][1] / MB, 1),
        "peak_mb": round(end["VmHWM"] / MB, 1),
        "file_backed_mb": round(end["RssFile"] / MB, 1),
        "cpu_pct": round(100 * cpu / wall, 2),
        "rows_per_s": round(rows / wall, 1),
        "seconds": round(wall, 1),
        "modules": modules,
    }


def rss_slope(samples: list[tuple[float, int, int]], after: float) -> float:
    """MB per minute the RSS grew by, a least-squares line through the samples from `after`
    seconds on (the start's allocations and the first flushes left out)."""
    points = [(t, rss) for t, rss, _ in samples if t >= after]
    if len(points) < 2:
        return 0.0
    mean_t = sum(t for t, _ in points) / len(points)
    mean_r = sum(r for _, r in points) / len(points)
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return 0.0
    slope = sum((t - mean_t) * (r - mean_r) for t, r in points) / var  # bytes per second
    return round(slope * 60 / MB, 3)


def floor(modules: Path) -> dict[str, float]:
    out = subprocess.run(
        [*PYTHON, "-c", FLOOR, str(modules)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    if out.returncode != 0:
        raise SystemExit(f"floor interpreter failed:\n{out.stderr[-3000:]}")
    got = json.loads(out.stdout.splitlines()[-1])
    bare = subprocess.run(
        [*PYTHON, "-c", FLOOR, os.devnull], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    return {
        "floor_rss_mb": round(got["VmRSS"] / MB, 1),
        "floor_peak_mb": round(got["VmHWM"] / MB, 1),
        "floor_file_backed_mb": round(got["RssFile"] / MB, 1),
        "bare_python_mb": round(json.loads(bare.stdout.splitlines()[-1])["VmRSS"] / MB, 1),
    }


# ---------------------------------------------------------------- --profile
def profile(tmp: Path, meter_ports: list[int], upstream: str, seconds: float, modules: Path) -> None:
    import tracemalloc

    snapshot = tmp / "tracemalloc.snapshot"
    run_gateway(tmp / "traced", meter_ports, upstream, seconds, snapshot)
    snap = tracemalloc.Snapshot.load(str(snapshot))
    stats = snap.statistics("filename")
    total = sum(s.size for s in stats)
    print(f"\ntracemalloc while running: {total / MB:.1f} MB traced; largest files:")
    for s in stats[:15]:
        print(f"  {s.size / MB:6.2f} MB  {s.count:7d} blocks  {_short(s.traceback[0].filename)}")
    packages: dict[str, int] = {}
    for s in stats:
        key = _package(s.traceback[0].filename)
        packages[key] = packages.get(key, 0) + s.size
    print("by package:")
    for name, size in sorted(packages.items(), key=lambda kv: -kv[1])[:12]:
        print(f"  {size / MB:6.2f} MB  {name}")
    print("largest lines:")
    for s in snap.statistics("lineno")[:10]:
        frame = s.traceback[0]
        print(f"  {s.size / MB:6.2f} MB  {_short(frame.filename)}:{frame.lineno}")

    print("RSS of importing one package alone, in a fresh interpreter (dependencies included):")
    costs = []
    for name in _packages(modules):
        out = subprocess.run(
            [sys.executable, "-c", IMPORT_COST, name], cwd=ROOT, capture_output=True, text=True, timeout=120
        )
        if out.returncode == 0:
            costs.append((int(out.stdout.split()[-1]), name))
    for size, name in sorted(costs, reverse=True)[:20]:
        print(f"  {size / MB:6.2f} MB  {name}")

    # the gateway's own imports, in the order it made them (written by -X importtime to its log)
    rows = []
    for line in (tmp / "traced" / "edge.log").read_text().splitlines():
        parts = line.split("|")
        if line.startswith("import time:") and len(parts) == 3 and parts[1].strip().isdigit():
            rows.append((int(parts[1]), parts[2].rstrip()))
    print(
        "the gateway's imports by cumulative time (python -X importtime, nested names indented; what a"
        " plugin's hook imports with importlib.import_module is not timed, and its own imports show"
        " unindented):"
    )
    for us, name in sorted(rows, reverse=True)[:20]:
        print(f"  {us / 1000:7.1f} ms  {name}")


def _packages(modules: Path) -> list[str]:
    """The packages worth weighing: every third-party top-level package the gateway loaded, and the
    project's own at their second level (edge.web, drivers.modbus, rules.engine ...)."""
    names = [n for n in modules.read_text().split() if not n.startswith("_") and n != "__main__"]
    own = ("edge", "drivers", "rules")
    out: list[str] = []
    for n in names:
        parts = n.split(".")
        if parts[0] in own:
            key = ".".join(parts[:2])
        elif parts[0] in sys.stdlib_module_names:
            continue
        else:
            key = parts[0]
        if key not in out:
            out.append(key)
    return out


def _short(filename: str) -> str:
    for marker in ("site-packages/", "lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return os.path.relpath(filename, ROOT) if filename.startswith(str(ROOT)) else filename


def _package(filename: str) -> str:
    short = _short(filename)
    if short.startswith(".") and "/" in short:  # the standard library: lib/python3.X/...
        short = short.split("/", 1)[1]
    head = short.split("/", 1)[0]
    return head.removesuffix(".py")


# ---------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    length = ap.add_mutually_exclusive_group()
    length.add_argument("--quick", action="store_true", help="a 30 s run instead of 120 s")
    length.add_argument(
        "--minutes", type=float, help="run the site this many minutes (the RSS slope wants 5 or more)"
    )
    ap.add_argument(
        "--profile", action="store_true", help="also a traced run: largest allocations and imports"
    )
    ap.add_argument(
        "--plain",
        action="store_true",
        help="run the gateway and the floor without python -OO (the service runs with it)",
    )
    ap.add_argument("--serve-meters", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_meters:
        serve_meters(args.serve_meters)
        return
    if args.minutes is not None and args.minutes <= 0:
        ap.error(f"--minutes must be a positive number of minutes, not {args.minutes:g}")
    seconds = 30.0 if args.quick else 60.0 * args.minutes if args.minutes else 120.0
    optimize = not args.plain
    if optimize:
        PYTHON.append("-OO")
    compile_project(optimize)
    meters, ports = start_meters(METERS)
    receiver, upstream = start_receiver()
    try:
        with tempfile.TemporaryDirectory(prefix="edge-footprint-") as d:
            tmp = Path(d)
            (tmp / "traced").mkdir()
            r = run_gateway(tmp, ports, upstream, seconds)
            modules = r.pop("modules")
            r.update(floor(modules))
            r["meters"] = METERS
            r["optimize"] = optimize
            r["ratio"] = round(r["steady_rss_mb"] / r["floor_rss_mb"], 3)
            r["ratio_peak"] = round(r["peak_mb"] / r["floor_peak_mb"], 3)
            r["target_steady_mb"], r["target_peak_mb"] = TARGET_STEADY_MB, TARGET_PEAK_MB
            print(
                f"site: {METERS} DTSU666 meters over Modbus TCP every 1 s, HTTP upstream, web UI idle; "
                f"{r['rows_per_s']} rows/s delivered upstream over {r['seconds']} s"
            )
            print(
                f"edge run: steady RSS {r['steady_rss_mb']} MB (median of the second half; max "
                f"{r['max_rss_mb']}), peak {r['peak_mb']} MB (VmHWM), CPU {r['cpu_pct']} % of one core, "
                f"up in {r['startup_s']} s; RSS slope {r['rss_slope_mb_per_min']:+.3f} MB/min"
            )
            print(
                f"floor (bare interpreter importing the same modules): RSS {r['floor_rss_mb']} MB, peak "
                f"{r['floor_peak_mb']} MB; ratio {r['ratio']} (peak {r['ratio_peak']}); targets: steady "
                f"<= {TARGET_STEADY_MB:g} MB, peak <= {TARGET_PEAK_MB:g} MB"
            )
            print(
                f"of which mapped files (shared libraries): gateway {r['file_backed_mb']} MB, floor "
                f"{r['floor_file_backed_mb']} MB; an interpreter importing nothing: {r['bare_python_mb']} MB"
            )
            if args.profile:
                profile(tmp, ports, upstream, min(seconds, 30.0), modules)
    finally:
        for proc in (meters, receiver):
            proc.kill()
            proc.wait()
    print(json.dumps(r))


if __name__ == "__main__":
    main()
