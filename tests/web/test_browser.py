"""End-to-end in headless Chromium against `edge demo` running as a separate process.

Flows (English, then the key ones in zh-CN): first-run setup with the setup code from the log,
login, overview numbers equal /api/v1/status, a live value changes without reload, a commissioning
read returns the simulated value, a bad rule shows its error at the right place, a dry-run shows
firings, a new rule fires on live data and appears in alerts, acknowledge, logout.
Screenshots go to artifacts/screenshots/ (EDGE_UPDATE_SCREENSHOTS=1: to docs/screenshots/, the
copies the README shows); page load times are printed (not asserted).
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.ports import free_port
from tests.support.tools import require_tool

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / ("docs" if os.environ.get("EDGE_UPDATE_SCREENSHOTS") == "1" else "artifacts") / "screenshots"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]
PASSWORD = "correct horse battery"
LIVE_POINT = "meter-b1.active_power_kw"  # sine 7.2–18 kW, a sample every 2 s, no deadband
T = 20_000  # ms: generous for a loaded 2-core CI machine


class Demo:
    """`edge demo` in a subprocess; its log lines are collected so the test can read the setup code."""

    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.lines: list[str] = []
        self.ready = threading.Event()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edge.cli", "demo", "--data-dir", str(data_dir), "--port", str(self.port)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if "demo site running" in line:
                self.ready.set()

    def setup_code(self) -> str:
        for line in self.lines:
            m = re.search(r"setup code (\d{4}-\d{4}-\d{4})", line)
            if m:
                return m.group(1)
        raise AssertionError("no setup code in the demo's log:\n" + "".join(self.lines))

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    require_tool("chromium", "Debian package chromium")
    d = Demo(tmp_path_factory.mktemp("demo"))
    try:
        if not d.ready.wait(60):  # a loaded machine starts it slowly
            raise AssertionError("edge demo did not start:\n" + "".join(d.lines))
        yield d
    finally:
        d.stop()


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """Debian's headless Chromium through Playwright, closed on exit."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def browser(demo: Demo) -> Iterator[Any]:
    with chromium() as b:
        yield b


def new_page(browser: Any, locale: str, base: str) -> tuple[Any, Any, list[str]]:
    # bypass_csp only lets Playwright's own probes run; the app itself runs under the strict CSP.
    ctx = browser.new_context(
        locale=locale, base_url=base, bypass_csp=True, viewport={"width": 1280, "height": 900}
    )
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    # HTTP errors the flows provoke on purpose (wrong setup code, invalid rule) are logged by the
    # browser as "Failed to load resource"; script errors are what must not happen.
    page.on(
        "console",
        lambda m: (
            errors.append(m.text)
            if m.type == "error" and not m.text.startswith("Failed to load resource")
            else None
        ),
    )
    return ctx, page, errors


def goto(page: Any, base: str, path: str, timings: dict[str, float]) -> None:
    """Navigate and wait until the page's module has rendered; records the load time."""
    started = time.monotonic()
    page.goto(base + path)
    page.wait_for_function("p => document.getElementById('view').dataset.ready === p", arg=path, timeout=T)
    timings[path] = (time.monotonic() - started) * 1000


def check_overview_matches_status(page: Any) -> None:
    page.wait_for_selector("[data-k=devices-online]", timeout=T)
    for attempt in range(3):  # device states may change between the two reads; retry a few times
        status = page.request.get("/api/v1/status").json()
        shown = {s: int(page.inner_text(f"[data-k=devices-{s}]")) for s in ("online", "degraded", "offline")}
        expected = {s: status["devices"].get(s, 0) for s in shown}
        if shown == expected and int(page.inner_text("[data-k=hub-points]")) == status["hub"]["points"]:
            return
        if attempt < 2:
            page.reload()
            page.wait_for_selector("[data-k=devices-online]", timeout=T)
    raise AssertionError(f"overview {shown} != status {expected}")


def check_live_value_changes(page: Any) -> str:
    cell = page.locator(f'td.value[data-point="{LIVE_POINT}"]')
    cell.wait_for(timeout=T)
    before = cell.inner_text()
    page.wait_for_function(
        "([sel, before]) => document.querySelector(sel).textContent !== before",
        arg=[f'td.value[data-point="{LIVE_POINT}"]', before],
        timeout=T,
    )
    return str(cell.inner_text())


def check_commissioning_read(page: Any) -> None:
    page.select_option("#commission-point", LIVE_POINT)
    page.click("#commission-read")
    value = page.locator("[data-k=commission-value]")
    value.wait_for(timeout=T)
    got = float(value.inner_text())
    assert 7.2 - 1e-6 <= got <= 18 + 1e-6
    # The value read must be one the device reported: wait until the journal has committed it
    # (the read answers from the driver at once; the journal commits in groups).
    page.wait_for_function(
        """async ([point, v]) => {
            const since = Date.now() / 1000 - 120;
            const r = await fetch(`/api/v1/history?point=${point}&since=${since}`);
            return (await r.json()).readings.some((x) => Math.abs(x[1] - v) <= 0.0051);  // kW: 2 decimals shown
        }""",
        arg=[LIVE_POINT, got],
        polling=250,
        timeout=T,
    )


def check_bad_rule_error_position(page: Any) -> None:
    text = "id: ui-bad\nname: broken\nwhen: meter-b1.active_power_kw\nif: value > > 10\nthen:\n  - alert: x\n"
    page.fill("#rule-text", text)
    page.wait_for_selector("#rule-status.bad", timeout=T)
    api = page.request.post(
        "/api/v1/rules/validate",
        data=yaml.safe_load(text),  # the rule the editor holds, as JSON
        headers={"X-CSRF-Token": page.request.get("/api/v1/auth/state").json()["csrf"]},
    )
    err = api.json()["errors"][0]
    assert err["field"] == "if"
    status = page.locator("#rule-status")
    assert status.get_attribute("data-line") == "4"  # the `if:` line of the YAML text
    assert status.get_attribute("data-column") == str(len("if: ") + err["column"])
    where = page.inner_text("#rule-error-where")
    caret_line = where.splitlines()[1]
    assert where.splitlines()[0].endswith("if: value > > 10")
    # the caret sits under the offending character of the expression
    assert caret_line.index("^") - len("    | ") == len("if: ") + err["column"] - 1


def check_dry_run_and_live_firing(page: Any, base: str, rule_id: str, timings: dict[str, float]) -> None:
    text = (
        f"id: {rule_id}\nname: 界面测试 UI test\nwhen: {LIVE_POINT}\nif: value > 0\n"
        f'notify: once\nseverity: warning\nthen:\n  - alert: "{{device}} {{value:.1f}} kW"\n'
    )
    page.fill("#rule-text", text)
    page.wait_for_selector("#rule-status.ok", timeout=T)
    page.select_option("#dry-hours", "1")
    page.click("#dry-run")
    page.wait_for_selector("svg.timeline rect.mark-fired", timeout=T)
    assert page.locator("ol.firings li.k-fired").count() >= 1
    page.click("#save-rule")
    page.wait_for_url(re.compile(f"/rules/{rule_id}$"), timeout=T)
    page.wait_for_function(
        "p => document.getElementById('view').dataset.ready === p", arg=f"/rules/{rule_id}", timeout=T
    )
    goto(page, base, "/alerts", timings)
    page.wait_for_selector(f'tr[data-source="{rule_id}"][data-kind="alert"]', timeout=T)


@pytest.mark.timeout(240)
def test_technician_flows_in_english_then_chinese(demo: Demo, browser: Any) -> None:
    timings: dict[str, float] = {}
    SHOTS.mkdir(parents=True, exist_ok=True)
    ctx, page, errors = new_page(browser, "en-US", demo.base)
    # first run: every page sends us to the setup form
    page.goto(demo.base + "/devices")
    assert page.url.startswith(demo.base + "/setup")
    page.wait_for_selector("#setup-form:not([hidden])", timeout=T)
    page.fill("#setup-code", "1111-2222-3333")
    page.fill("#setup-name", "admin")
    page.fill("#setup-password", PASSWORD)
    page.fill("#setup-password2", PASSWORD + "x")
    page.click("#setup-submit")
    page.wait_for_selector("#message:not([hidden])", timeout=T)  # the two passwords differ
    page.fill("#setup-password2", PASSWORD)  # an edit clears what was said about the last submit
    page.wait_for_selector("#message", state="hidden", timeout=T)
    page.click("#setup-submit")
    page.wait_for_selector("#message:not([hidden])", timeout=T)
    assert "setup code" in page.inner_text("#message").lower()
    page.fill("#setup-code", demo.setup_code())
    page.click("#setup-submit")
    page.wait_for_url(demo.base + "/devices", timeout=T)

    goto(page, demo.base, "/", timings)
    check_overview_matches_status(page)
    page.screenshot(path=str(SHOTS / "overview.png"), full_page=True)

    goto(page, demo.base, "/devices", timings)
    devices = page.request.get("/api/v1/devices").json()["devices"]
    assert page.locator("tr[data-device]").count() == len(devices) >= 9
    goto(page, demo.base, "/devices/meter-b1", timings)
    url = page.url
    check_live_value_changes(page)
    assert page.url == url  # no reload, no navigation
    page.click(f'tr[data-row="{LIVE_POINT}"]')
    page.wait_for_function("() => Number(document.querySelector('svg.trend')?.dataset.points) > 1", timeout=T)
    check_commissioning_read(page)
    page.screenshot(path=str(SHOTS / "device.png"), full_page=True)

    goto(page, demo.base, "/rules", timings)
    goto(page, demo.base, "/rules/new", timings)
    check_bad_rule_error_position(page)
    check_dry_run_and_live_firing(page, demo.base, "ui-test-flow", timings)
    page.click('tr[data-source="ui-test-flow"] button[data-ack]')
    page.fill("#ack-comment", "checked on site")
    page.click("dialog [data-act=ok]")
    page.wait_for_selector('tr[data-source="ui-test-flow"] .acked', timeout=T)
    goto(page, demo.base, "/rules/new", timings)
    page.fill(
        "#rule-text",
        # a rule that crosses often on the demo's wandering voltage, so the timeline has marks
        "id: shot\nname: 电压偏高 Voltage above 225 V\nwhen: meter-*.voltage\nif: value > 225\n"
        'clear_if: value < 224.8\nnotify: toggle\nseverity: warning\nthen:\n  - alert: "{device} {value:.1f} V"\n',
    )
    page.wait_for_selector("#rule-status.ok", timeout=T)
    page.click("#dry-run")
    page.wait_for_selector("[data-k=dry-summary]", timeout=T)
    dry = page.locator("[data-k=dry-summary]").locator("xpath=..").inner_text()
    assert "null" not in dry, dry  # a hint left out must not show as the text "null"
    page.screenshot(path=str(SHOTS / "rule-editor-dry-run.png"), full_page=True)

    for path in ("/sync", "/audit", "/admin"):
        goto(page, demo.base, path, timings)
    assert page.locator('tr[data-user="admin"]').count() == 1
    page.fill("#add-user input[name=name]", "zhang.san")
    page.fill("#add-user input[name=password]", PASSWORD)
    page.click("#add-user button")
    page.wait_for_selector('tr[data-user="zhang.san"]', timeout=T)
    page.fill("#add-user input[name=name]", "li.si")
    page.fill("#add-user input[name=password]", PASSWORD)
    page.select_option("#add-user select[name=role]", "viewer")
    page.click("#add-user button")
    page.wait_for_selector('tr[data-user="li.si"]', timeout=T)
    goto(page, demo.base, "/audit", timings)
    for action in ("setup", "alert_ack", "user_add"):
        assert page.locator(f'tr[data-action="{action}"]').count() >= 1, action

    page.click("#logout")
    page.wait_for_url(re.compile(r"/login"), timeout=T)
    page.goto(demo.base + "/")
    assert "/login" in page.url
    assert errors == [], errors
    ctx.close()

    # --- the same key flows in zh-CN (chosen from the browser's language)
    ctx, page, errors = new_page(browser, "zh-CN", demo.base)
    page.goto(demo.base + "/")
    page.wait_for_selector("#login-form:not([hidden])", timeout=T)
    assert page.inner_text("#login-form h2") == "登录"
    page.fill("#login-name", "zhang.san")
    page.fill("#login-password", "wrong password")
    page.click("#login-submit")
    page.wait_for_selector("#message:not([hidden])", timeout=T)
    assert "用户名或密码错误" in page.inner_text("#message")
    page.fill("#login-password", PASSWORD)
    page.click("#login-submit")
    page.wait_for_url(demo.base + "/", timeout=T)
    page.wait_for_selector("[data-k=devices-online]", timeout=T)
    assert page.inner_text("main h1") == "站点总览"
    check_overview_matches_status(page)
    page.screenshot(path=str(SHOTS / "overview-zh-CN.png"), full_page=True)
    zh_timings: dict[str, float] = {}
    goto(page, demo.base, "/devices/meter-b1", zh_timings)
    assert "测点（实时）" in page.inner_text("main")
    check_live_value_changes(page)
    check_commissioning_read(page)
    page.screenshot(path=str(SHOTS / "device-zh-CN.png"), full_page=True)
    goto(page, demo.base, "/rules/new", zh_timings)
    page.fill(
        "#rule-text", "id: zh-bad\nwhen: meter-b1.active_power_kw\nif: value > > 10\nthen:\n  - alert: x\n"
    )
    page.wait_for_selector("#rule-status.bad", timeout=T)
    assert page.inner_text("#rule-status").startswith("第 3 行")
    check_dry_run_and_live_firing(page, demo.base, "ui-test-zh", zh_timings)
    assert "告警与事件" in page.inner_text("main h1")
    # switching the language by hand
    page.select_option("#lang", "en")
    page.wait_for_function("() => document.documentElement.lang === 'en'", timeout=T)
    # the reloaded page's own heading, not the nav link (whose English text is in the static HTML
    # before the app has started and bound the logout button: a click then did nothing)
    page.wait_for_function(
        "() => document.querySelector('main h1')?.textContent === 'Alerts & events'", timeout=T
    )
    page.click("#logout")
    page.wait_for_url(re.compile(r"/login"), timeout=T)
    assert errors == [], errors
    ctx.close()

    # a viewer sees that the alert was acknowledged, not who did it nor the comment (personal data)
    ctx, page, errors = new_page(browser, "en-US", demo.base)
    page.goto(demo.base + "/")
    page.wait_for_selector("#login-form:not([hidden])", timeout=T)
    page.fill("#login-name", "li.si")
    page.fill("#login-password", PASSWORD)
    page.click("#login-submit")
    page.wait_for_url(demo.base + "/", timeout=T)
    goto(page, demo.base, "/alerts", {})
    acked = page.wait_for_selector('tr[data-source="ui-test-flow"] .acked', timeout=T)
    assert acked.inner_text() == "acknowledged"
    assert "checked on site" not in page.inner_text("main") and "admin" not in acked.inner_text()
    assert errors == [], errors
    ctx.close()

    print("\npage load times (ms, navigation to rendered page):")
    for path, ms in {**timings, **{f"{k} (zh-CN)": v for k, v in zh_timings.items()}}.items():
        print(f"  {path:<24} {ms:7.1f}")
