"""Every page of the UI in both languages at 1280 px and on a phone (390 × 844), in headless
Chromium against one `edge demo` process. Each page fails on: a page that scrolls sideways, an
English message on a zh-CN page where the catalogue has its Chinese, an i18n key shown as it is,
a script error. Page by page it checks what a technician reads: until-full as a future time,
labelled one-line events with acknowledge only on alerts, durations that are durations, the
register map and a raw read that starts from the point's own address in hex; on the phone, a
menu button for the navigation, tables as cards and touch targets of at least 40 px.
Screenshots go to artifacts/screenshots/ (EDGE_UPDATE_SCREENSHOTS=1: docs/screenshots/)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from tests.web.test_browser import PASSWORD, SHOTS, Demo, T, browser, demo

__all__ = ["browser", "demo"]  # the fixtures: one demo site and one browser for this module

STATIC = Path(__file__).resolve().parents[2] / "edge" / "web" / "static"
EN = json.loads((STATIC / "i18n" / "en.json").read_text("utf-8"))
ZH = json.loads((STATIC / "i18n" / "zh-CN.json").read_text("utf-8"))
PHONE = {"width": 390, "height": 844}
TABLET = {"width": 768, "height": 1024}
DESKTOP = {"width": 1280, "height": 900}
PAGES = [
    "/",
    "/devices",
    "/devices/meter-main",
    "/devices/gate-south",
    "/devices/kiosk-1",
    "/devices/kiosk-instruments",
    "/alerts",
    "/rules",
    "/rules/bp-high",
    "/kpi",
    "/sync",
    "/audit",
    "/admin",
    "/privacy",
]

# Visible text of the page (options of a select count as visible: they are what it offers).
VISIBLE_TEXT = """() => {
  const out = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode;
    const text = node.textContent.trim();
    const el = node.parentElement;
    // data (names, ids, drivers) is marked translate="no": it is what it is in every language
    if (!text || !el || el.closest('script, style, pre, code, textarea, [translate=no]')) continue;
    if (el.closest('option')) { out.push(text); continue; }
    const box = el.getBoundingClientRect();
    if (box.width === 0 && box.height === 0) continue;
    if (getComputedStyle(el).visibility === 'hidden') continue;
    out.push(text);
  }
  return out;
}"""

SIDEWAYS = """() => {
  const doc = document.documentElement;
  if (doc.scrollWidth <= doc.clientWidth + 1) return null;
  const wide = [...document.querySelectorAll('body *')].filter((e) => e.getBoundingClientRect().right > doc.clientWidth + 1)
    .slice(-3).map((e) => `${e.tagName.toLowerCase()}${e.id ? '#' + e.id : ''}.${e.className} ${Math.round(e.getBoundingClientRect().right)}px`);
  return `scrollWidth ${doc.scrollWidth} > ${doc.clientWidth}: ${wide.join(', ')}`;
}"""

# Controls a finger must hit on a phone: buttons, links styled as buttons, selects and inputs.
SMALL_TARGETS = """() => [...document.querySelectorAll('button, select, input:not([type=hidden]), nav a')]
  .filter((e) => { const r = e.getBoundingClientRect(); return r.width > 0 && r.height > 0 && getComputedStyle(e).visibility !== 'hidden'; })
  .filter((e) => { const r = e.getBoundingClientRect(); return e.type === 'checkbox' ? r.height < 20 : r.height < 40; })
  .map((e) => `${e.tagName.toLowerCase()}${e.id ? '#' + e.id : ''} ${e.textContent.trim().slice(0, 20)} ${Math.round(e.getBoundingClientRect().height)}px`)"""


def _template(text: str) -> re.Pattern[str]:
    parts = re.split(r"\{\w+\}", text)
    return re.compile("^" + "(.+?)".join(re.escape(p) for p in parts) + "$")


def english_messages() -> tuple[set[str], list[tuple[str, re.Pattern[str]]]]:
    """The en catalogue's texts that zh-CN translates: exact ones, and templates whose own words
    (outside their {params}) are English."""
    exact: set[str] = set()
    templates: list[tuple[str, re.Pattern[str]]] = []
    for key, text in EN.items():
        if ZH.get(key, text) == text or not re.search(r"[A-Za-z]{3}", text):
            continue
        if "{" in text:
            if re.search(r"[A-Za-z]{3}", re.sub(r"\{\w+\}", "", text)):
                templates.append((key, _template(text)))
        else:
            exact.add(text)
    return exact, templates


EXACT, TEMPLATES = english_messages()
KEY_PREFIXES = {k.split(".", 1)[0] for k in EN}
KEY_LIKE = re.compile(r"^([a-z][A-Za-z]*)\.[A-Za-z0-9_.]+$")


def language_problems(texts: list[str], lang: str) -> list[str]:
    problems = []
    for text in texts:
        m = KEY_LIKE.match(text)
        if text in EN or (m and m.group(1) in KEY_PREFIXES):
            problems.append(f"unrendered key {text!r}")
        if text in ("null", "undefined", "NaN", "[object Object]"):
            problems.append(f"a script's placeholder shown as text: {text!r}")
        if lang != "zh-CN":
            continue
        if text in EXACT:
            problems.append(f"English on a zh-CN page: {text!r}")
            continue
        for key, pattern in TEMPLATES:
            if pattern.match(text):
                problems.append(f"English on a zh-CN page: {text!r} ({key})")
                break
    return problems


def first_admin(browser: Any, base: str, code: str) -> None:
    """The admin "admin" (password PASSWORD) created through first-run setup of the gateway at `base`."""
    ctx = browser.new_context(base_url=base)
    resp = ctx.request.post("/api/v1/auth/setup", data={"code": code, "name": "admin", "password": PASSWORD})
    assert resp.status == 201, resp.text()
    ctx.close()


@pytest.fixture(scope="module")
def admin_ready(demo: Demo, browser: Any) -> Demo:
    """The demo with its admin created through first-run setup, and an alert to acknowledge."""
    first_admin(browser, demo.base, demo.setup_code())
    return demo


class Session:
    """A logged-in browser page of one language and viewport; script errors collect in `errors`."""

    def __init__(self, browser: Any, demo: Demo, locale: str, viewport: dict[str, int]) -> None:
        self.lang = "zh-CN" if locale.startswith("zh") else "en"
        self.phone = viewport["width"] < 500
        self.narrow = viewport["width"] < 900  # touch: the menu button, cards, 40 px targets
        self.ctx = browser.new_context(
            locale=locale,
            base_url=demo.base,
            bypass_csp=True,
            viewport=viewport,
            is_mobile=self.narrow,
            has_touch=self.narrow,
        )
        resp = self.ctx.request.post("/api/v1/auth/login", data={"name": "admin", "password": PASSWORD})
        assert resp.status == 200, resp.text()
        self.page = self.ctx.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on(
            "console",
            lambda m: (
                self.errors.append(m.text)
                if m.type == "error" and not m.text.startswith("Failed to load resource")
                else None
            ),
        )

    def open(self, path: str) -> None:
        self.page.goto(path)
        ready = path.split("?")[0]
        self.page.wait_for_function(
            "p => document.getElementById('view')?.dataset.ready === p", arg=ready, timeout=T
        )

    def problems(self, path: str) -> list[str]:
        out = [f"{path}: {p}" for p in language_problems(self.page.evaluate(VISIBLE_TEXT), self.lang)]
        sideways = self.page.evaluate(SIDEWAYS)
        if sideways:
            out.append(f"{path}: the page scrolls sideways ({sideways})")
        # a page that failed to render shows its error instead: the walk saw nothing of it
        out += [
            f"{path}: shows an error: {e}" for e in self.page.locator("#view [role=alert]").all_inner_texts()
        ]
        if self.narrow:
            out += [f"{path}: touch target under 40 px: {s}" for s in self.page.evaluate(SMALL_TARGETS)]
        out += [f"{path}: a column squeezed to a few characters: {c}" for c in self.page.evaluate(SQUEEZED)]
        return out

    def shot(self, name: str) -> None:
        suffix = ("-phone" if self.phone else "") + ("-zh-CN" if self.lang == "zh-CN" else "")
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SHOTS / f"{name}{suffix}.png"), full_page=True)

    def close(self) -> None:
        self.ctx.close()


# Navigation entries the header cuts off (the navigation does not wrap at desktop widths).
CLIPPED_NAV = """() => { const nav = document.getElementById('nav').getBoundingClientRect();
  return [...document.querySelectorAll('#nav a')].filter((a) => a.getBoundingClientRect().right > nav.right + 1)
    .map((a) => a.textContent); }"""


# Table cells squeezed into a column a few characters wide (text wrapping a character per line).
SQUEEZED = """() => [...document.querySelectorAll('td')].filter((td) => {
  const r = td.getBoundingClientRect();
  return td.textContent.trim().length > 3 && r.width > 0 && r.width < 48 && r.height > 60;
}).map((td) => `${td.dataset.label || ''}: ${td.textContent.trim().slice(0, 30)}`)"""


def check_overview(s: Session) -> None:
    page = s.page
    full = page.inner_text("[data-k=buffer-full]")
    # the page's own status (a second fetch here may see the journal start or stop filling): a
    # time until full is a future time, never "... ago"
    if full != (EN if s.lang == "en" else ZH)["overview.notFilling"]:
        assert ("in " in full) if s.lang == "en" else full.endswith("后"), full
    assert page.inner_text("[data-k=ingest-rate]") != "—"  # from the status, at the first render
    # one count of active alerts on the page: the alerts card and the rules component agree
    shown = page.inner_text("[data-k=alerts-active]")
    rules = page.locator("[data-k=comp-rules-active]")
    if rules.count():
        assert rules.inner_text() == shown
    # every component the demo runs has its own title and rows, none the raw fallback
    cat = EN if s.lang == "en" else ZH
    assert page.inner_text('[data-component="kpi"] h3') == cat["comp.kpi.title"]
    assert page.locator('[data-k$="-raw"]').count() == 0


def check_devices(s: Session) -> None:
    durations = s.page.locator("tr[data-device] td.duration").all_inner_texts()
    assert durations and not any("前" in d or "ago" in d for d in durations), durations


def check_modbus_meter(s: Session) -> None:
    page = s.page
    page.wait_for_selector("td.register", timeout=T)
    regs = page.request.get("/api/v1/commission/registers/meter-main").json()["points"]
    first = regs[0]
    cell = page.inner_text(f'td[data-register="{first["point"]}"]')
    assert f"0x{first['address']:04X}" in cell and f"({first['address']})" in cell, cell
    # the raw read starts from the chosen point's own table and address
    page.select_option("#commission-point", first["point"])
    assert page.input_value(".probe input[name=address]") == f"0x{first['address']:04X}"
    assert page.input_value(".probe select[name=table]") == first["table"]
    # a value is rounded to the point's precision: no float noise
    for text in page.locator("td.value").all_inner_texts():
        assert not re.search(r"\.\d{4,}", text), text


def check_gate_trend(s: Session) -> None:
    title = s.page.inner_text(".card h2 >> nth=1")
    assert "fault_code" not in title and "vehicle_count" in title, title


def check_alerts(s: Session) -> None:
    page = s.page
    page.wait_for_function("() => document.getElementById('events')?.dataset.loaded", timeout=T)
    loaded = page.get_attribute("#events", "data-loaded")
    page.select_option("#f-kind", "")
    page.wait_for_function(
        "before => document.getElementById('events').dataset.loaded !== before", arg=loaded, timeout=T
    )
    page.wait_for_selector("tr[data-kind]", timeout=T)
    options = {
        o["value"]: o["text"]
        for o in page.eval_on_selector_all(
            "#f-kind option", "os => os.map((o) => ({value: o.value, text: o.textContent}))"
        )
    }
    for kind in ("alert", "gate_opened", "vehicle_passage", "blood_pressure", "device_state"):
        assert kind in options and options[kind] != kind, (kind, options.get(kind))
    for kind in set(page.eval_on_selector_all("tr[data-kind]", "rs => rs.map((r) => r.dataset.kind)")):
        assert kind in options, kind
    assert page.locator('tr:not([data-kind="alert"]) button[data-ack]').count() == 0
    lines = page.locator("tr[data-kind] td.desc .line").all_inner_texts()
    assert lines and not any(re.search(r"\w+=\S", line) for line in lines), lines[:5]
    if not s.narrow:  # badges and buttons on one line: no column squeezed a character per line
        tall = page.eval_on_selector_all(
            "table.events .badge, table.events button",
            "es => es.filter((e) => e.getBoundingClientRect().height > 34).map((e) => e.textContent)",
        )
        assert tall == [], tall


def check_sync(s: Session) -> None:
    # the demo declares a pull consumer and no push sink: the empty list says so
    cat = EN if s.lang == "en" else ZH
    assert s.page.locator("#sinks").count() == 0
    assert s.page.locator("p.none", has_text=cat["sync.noSinks"]).count() == 1
    assert s.page.locator('tr[data-consumer="city-platform"]').count() == 1


KPI_API = "**/api/v1/kpi?*"


def check_kpi(s: Session) -> None:
    # the demo computes KPIs: the range form, and the calendar or the "no day yet" hint
    assert s.page.locator("#kpi-range").count() == 1
    assert s.page.locator("#kpi-calendar, #kpi-none").count() == 1
    # a site without a kpi: section (the API answers 404): the page says how to turn KPIs on
    cat = EN if s.lang == "en" else ZH
    problem = '{"type": "about:blank", "title": "Not Found", "status": 404}'
    s.page.route(
        KPI_API,
        lambda route: route.fulfill(status=404, content_type="application/problem+json", body=problem),
    )
    try:
        s.open("/kpi")
        assert s.page.inner_text("#kpi-off h2") == cat["kpi.off.title"]
        assert "kpi:" in s.page.inner_text("#kpi-off pre")
    finally:
        s.page.unroute(KPI_API)
        s.open("/kpi")  # the walk's own checks look at the real page


def check_privacy(s: Session) -> None:
    # the record of processing: the kiosk's health measurements are sensitive, the gate's plates personal
    assert (
        s.page.get_attribute('#privacy-events tr[data-item="blood_pressure"] [data-class]', "data-class")
        == "sensitive"
    )
    assert s.page.locator('#privacy-recipients tr[data-recipient="city-platform"]').count() == 1


def check_admin(s: Session) -> None:
    # the consumer the site file declares is listed with the API tokens
    row = s.page.locator('tr[data-site-consumer="city-platform"]')
    assert row.count() == 1


CHECKS = {
    "/sync": check_sync,
    "/admin": check_admin,
    "/kpi": check_kpi,
    "/privacy": check_privacy,
    "/": check_overview,
    "/devices": check_devices,
    "/devices/meter-main": check_modbus_meter,
    "/devices/gate-south": check_gate_trend,
    "/alerts": check_alerts,
}
# test_browser.py shoots the overview and a meter at 1280 px; this walk adds the rest and the phone
SHOTS_OF = {"/devices/meter-main": "device-modbus", "/alerts": "alerts"}
PHONE_SHOTS_OF = {**SHOTS_OF, "/": "overview"}


def walk(
    browser: Any, demo: Demo, locale: str, viewport: dict[str, int]
) -> tuple[list[str], dict[str, float]]:
    s = Session(browser, demo, locale, viewport)
    problems: list[str] = []
    timings: dict[str, float] = {}
    try:
        for path in PAGES:
            started = time.monotonic()
            s.open(path)
            timings[path] = (time.monotonic() - started) * 1000
            if path in CHECKS:
                CHECKS[path](s)
            problems += s.problems(path)
            shots = PHONE_SHOTS_OF if s.phone else {} if s.narrow else SHOTS_OF
            if path in shots:
                s.shot(shots[path])
        if s.narrow:
            check_phone_menu(s)
        else:
            header = s.page.eval_on_selector("header.top", "e => e.getBoundingClientRect().height")
            assert header < 60, f"the header wraps at {viewport['width']} px: {header}px high"
            assert s.page.evaluate(CLIPPED_NAV) == [], f"navigation cut off at {viewport['width']} px"
        problems += [f"script error: {e}" for e in s.errors]
    finally:
        s.close()
    return problems, timings


def check_phone_menu(s: Session) -> None:
    page = s.page
    s.open("/devices")
    assert not page.is_visible("#nav a[href='/alerts']")
    page.click("#menu")
    assert page.get_attribute("#menu", "aria-expanded") == "true"
    page.click("#nav a[href='/alerts']")
    page.wait_for_function("() => document.getElementById('view')?.dataset.ready === '/alerts'", timeout=T)
    assert not page.is_visible("#nav a[href='/alerts']")  # the menu folds after choosing
    # a table is a stack of cards: each cell says which column it is
    s.open("/devices")
    display = page.eval_on_selector("table.devices tbody tr", "e => getComputedStyle(e).display")
    assert display == "block"
    label = page.eval_on_selector(
        "table.devices tbody td:nth-child(3)", "e => getComputedStyle(e, '::before').content"
    )
    assert label.strip('"') == (EN if s.lang == "en" else ZH)["devices.state"]


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    "locale,viewport",
    [("en-US", DESKTOP), ("zh-CN", DESKTOP), ("en-US", PHONE), ("zh-CN", PHONE), ("zh-CN", TABLET)],
    ids=["en-1280", "zh-CN-1280", "en-390", "zh-CN-390", "zh-CN-768"],
)
def test_every_page_reads_right(
    admin_ready: Demo, browser: Any, locale: str, viewport: dict[str, int]
) -> None:
    problems, timings = walk(browser, admin_ready, locale, viewport)
    print(f"\n{locale} {viewport['width']} px, page load (ms):", {k: round(v) for k, v in timings.items()})
    assert problems == [], "\n".join(problems)


def test_checks_catch_what_they_look_for() -> None:
    """The language check itself: an English catalogue text, a filled-in English template and a
    raw key are found on a zh-CN page; Chinese text, data and a point id are not."""
    found = language_problems(
        [
            "Load older events",
            "3 minutes ago",
            "alerts.more",
            "加载更早的事件",
            "meter-b1.voltage",
            "沪A12345",
        ],
        "zh-CN",
    )
    assert found == [
        "English on a zh-CN page: 'Load older events'",
        "English on a zh-CN page: '3 minutes ago' (rel.ago)",
        "unrendered key 'alerts.more'",
    ], found
    assert language_problems(["Load older events", "3 minutes ago"], "en") == []
    assert language_problems(["null", "undefined"], "en") == [
        "a script's placeholder shown as text: 'null'",
        "a script's placeholder shown as text: 'undefined'",
    ]
