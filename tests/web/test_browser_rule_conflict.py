"""The rules pages in headless Chromium when someone else acts meanwhile: two editors of one rule
both press Save, and the second is told what the first changed instead of silently overwriting it
(then loads the stored version, or saves over it knowingly); a stale editor does not enable again a
rule a colleague disabled without saying so; a session that ends while a rule is being edited keeps
the text on the page, and puts it back once its author logged in again; and an import that would
replace a rule tuned and disabled since lists it, says it would enable it, and asks first."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge.api.tokens import create_token
from tests.support.site import running_site
from tests.web.conftest import PASSWORD
from tests.web.test_browser import T
from tests.web.test_browser_pages import browser, logged_in_page, open_page, site_context, watched_page

__all__ = ["browser"]  # the fixture shared with the module it comes from

TEXT = """\
id: bin-full
name: Bin full
when: bin-*.fill_pct
if: value >= 85
for: 1m
severity: warning
then:
  - alert: "{device} {value:.0f}%"
"""


async def _second_session(browser: Any, rt: Any) -> Any:
    """Another browser of the same site, logged in (the admin set up by `logged_in_page`)."""
    ctx = await site_context(browser, rt)
    resp = await ctx.request.post("/api/v1/auth/login", data={"name": "admin", "password": PASSWORD})
    assert resp.status == 200
    return await watched_page(ctx)


async def _api(page: Any, method: str, path: str, **kw: Any) -> Any:
    csrf = (await (await page.request.get("/api/v1/auth/state")).json())["csrf"]
    headers = {"X-CSRF-Token": csrf, **({"Content-Type": "application/yaml"} if "data" in kw else {})}
    resp = await page.request.fetch(path, method=method, headers=headers, **kw)
    return resp.status, await resp.json() if resp.status != 204 else None


async def _stored(page: Any) -> Any:
    return await (await page.request.get("/api/v1/rules/bin-full")).json()


async def _edit(page: Any, old: str, new: str) -> None:
    await page.fill("#rule-text", (await page.input_value("#rule-text")).replace(old, new))
    await page.wait_for_selector("#rule-status.ok", timeout=T)


async def test_two_editors_save_one_rule_and_the_second_sees_what_the_first_changed(
    tmp_path: Path, browser: Any
) -> None:
    async with running_site(tmp_path, {"devices": []}) as rt:
        a = await logged_in_page(browser, rt)
        b = await _second_session(browser, rt)
        status, _ = await _api(a, "POST", "/api/v1/rules", data=TEXT.encode())
        assert status == 201
        await open_page(a, "/rules/bin-full")
        await open_page(b, "/rules/bin-full")

        await _edit(a, "value >= 85", "value >= 95")
        await _edit(b, "severity: warning", "severity: info")
        await a.click("#save-rule")
        await a.wait_for_selector("#save-msg .ok-box", timeout=T)
        await b.click("#save-rule")
        await b.wait_for_selector("#save-conflict", timeout=T)
        said = await b.inner_text("#save-conflict")
        assert (
            "admin saved this rule" in said and "(version 2); your text was made against version 1" in said
        ), said
        # a changed line reads as the line before, then the line after
        assert "- if: value >= 85\n+ if: value >= 95\n" in await b.inner_text("#conflict-theirs")
        mine = await b.inner_text("#conflict-mine")
        assert "- if: value >= 95" in mine and "+ severity: info" in mine
        assert await b.locator("#save-msg .ok-box").count() == 0
        stored = await _stored(b)
        assert (
            stored["version"] == 2
            and "value >= 95" in stored["text"]
            and "severity: warning" in stored["text"]
        )

        # the first editor saves again: its version is the one it saved, no conflict
        await _edit(a, "for: 1m", "for: 2m")
        await a.evaluate("document.querySelector('#save-msg').replaceChildren()")  # the first save's
        await a.click("#save-rule")
        await a.wait_for_selector("#save-msg .ok-box", timeout=T)
        assert (await _stored(a))["version"] == 3

        # the second one saves its text over the stored version knowingly: made against version 3
        await b.click("#conflict-overwrite")
        # version 3 came meanwhile: said again (the first conflict's box stays until the answer)
        await b.locator("#save-conflict", has_text="(version 3)").wait_for(timeout=T)
        assert "(version 3); your text was made against version 2" in await b.inner_text("#save-conflict")
        assert "+ for: 2m" in await b.inner_text("#conflict-theirs")  # what changed since version 2
        await b.click("#conflict-overwrite")
        await b.wait_for_selector("#save-msg .ok-box", timeout=T)
        stored = await _stored(b)
        assert (
            stored["version"] == 4 and "severity: info" in stored["text"] and "value >= 85" in stored["text"]
        )

        # loading the stored version throws this editor's edits away and shows the stored text
        await _edit(a, "for: 2m", "for: 3m")
        await a.click("#save-rule")
        await a.wait_for_selector("#conflict-reload", timeout=T)
        await a.click("#conflict-reload")
        await a.wait_for_function(
            "() => document.getElementById('rule-text')?.value.includes('severity: info')", timeout=T
        )
        assert "for: 1m" in await a.input_value("#rule-text")
        assert (await _stored(a))["version"] == 4
        assert a.errors == [] and b.errors == []


async def test_a_stale_editor_says_saving_would_enable_a_rule_disabled_meanwhile(
    tmp_path: Path, browser: Any
) -> None:
    async with running_site(tmp_path, {"devices": []}) as rt:
        page = await logged_in_page(browser, rt)
        assert (await _api(page, "POST", "/api/v1/rules", data=TEXT.encode()))[0] == 201
        await open_page(page, "/rules/bin-full")
        status, disabled = await _api(page, "POST", "/api/v1/rules/bin-full/disable")
        assert status == 200 and disabled["enabled"] is False

        await _edit(page, "for: 1m", "for: 2m")
        await page.click("#save-rule")
        await page.wait_for_selector("#save-conflict [data-k=conflict-enabled]", timeout=T)
        assert "would enable it again" in await page.inner_text("#save-conflict")
        assert "+ enabled: false" in await page.inner_text("#conflict-theirs")
        stored = await _stored(page)
        assert stored["enabled"] is False and stored["version"] == 2 and "for: 1m" in stored["text"]
        assert page.errors == []


async def test_an_ended_session_keeps_the_rule_text_and_gives_it_back_after_the_login(
    tmp_path: Path, browser: Any
) -> None:
    async with running_site(tmp_path, {"devices": []}) as rt:
        assert rt.state is not None
        page = await logged_in_page(browser, rt)
        assert (await _api(page, "POST", "/api/v1/rules", data=TEXT.encode()))[0] == 201
        await open_page(page, "/rules/bin-full")
        edited = (await page.input_value("#rule-text")).replace("value >= 85", "value >= 25")
        edited += "# a long edit the technician has been working on\n"
        await page.fill("#rule-text", edited)
        await page.wait_for_selector("#rule-status.ok", timeout=T)

        # an admin ends every session of the editing user
        admin = {"Authorization": f"Bearer {create_token(rt.state, 'ops', ['read', 'admin'])}"}
        listed = await (await page.request.get("/api/v1/sessions", headers=admin)).json()
        assert listed["sessions"]
        for s in listed["sessions"]:
            resp = await page.request.delete(f"/api/v1/sessions/{s['id']}", headers=admin)
            assert resp.status in (200, 204)

        # the next keystroke's validation is refused: the page stays, the text stays, it is said
        await page.focus("#rule-text")
        await page.keyboard.press("End")
        await page.keyboard.type(" ")
        await page.wait_for_selector("#session-ended", timeout=T)
        assert page.url.endswith("/rules/bin-full")
        assert await page.input_value("#rule-text") == edited + " "
        assert "Copy your text, then log in again" in await page.inner_text("#session-ended")

        # Save says the same and stores nothing
        await page.click("#save-rule")
        await page.wait_for_selector("#rule-status.bad", timeout=T)
        assert page.url.endswith("/rules/bin-full") and await page.input_value("#rule-text") == edited + " "

        # logging in again in this tab brings the text back, still made against version 1
        await page.click("#session-login")
        await page.wait_for_selector("#login-form:not([hidden])", timeout=T)
        await page.fill("#login-name", "admin")
        await page.fill("#login-password", PASSWORD)
        await page.click("#login-submit")
        await page.wait_for_function(
            "() => document.getElementById('view')?.dataset.ready === '/rules/bin-full'", timeout=T
        )
        await page.wait_for_selector("#draft-restored", timeout=T)
        assert await page.input_value("#rule-text") == edited + " "
        await page.wait_for_selector("#rule-status.ok", timeout=T)
        await page.click("#save-rule")
        await page.wait_for_selector("#save-msg .ok-box", timeout=T)
        stored = await _stored(page)
        assert stored["version"] == 2 and "value >= 25" in stored["text"]
        assert page.errors == []


PACK = """\
rules:
  - id: bin-full
    name: Bin full
    when: bin-*.fill_pct
    if: value >= 85
    for: 1m
    then:
      - alert: "{device} {value:.0f}%"
  - id: bin-empty
    when: bin-*.fill_pct
    if: value < 5
    then:
      - alert: "{device} empty"
"""


async def test_an_import_that_would_replace_a_tuned_disabled_rule_asks_first(
    tmp_path: Path, browser: Any
) -> None:
    pack = tmp_path / "waste.yaml"
    pack.write_text(PACK, encoding="utf-8")
    async with running_site(tmp_path, {"devices": []}) as rt:
        page = await logged_in_page(browser, rt)
        await open_page(page, "/rules")
        await page.set_input_files("#pack-file", str(pack))  # only new rules: nothing to ask
        await page.wait_for_selector("#rules-msg .ok-box", timeout=T)
        assert await page.locator("dialog").count() == 0

        # tuned and disabled since
        tuned = (await _stored(page))["text"].replace("for: 1m", "for: 5m")
        assert (await _api(page, "PUT", "/api/v1/rules/bin-full", data=tuned.encode()))[0] == 200
        assert (await _api(page, "POST", "/api/v1/rules/bin-full/disable"))[0] == 200
        await open_page(page, "/rules")
        await page.set_input_files("#pack-file", str(pack))
        await page.wait_for_selector("#import-preview tr[data-rule=bin-full]", timeout=T)
        row = await page.inner_text("#import-preview tr[data-rule=bin-full]")
        assert "will be enabled" in row and "version 3: admin disabled a rule" in row, row
        assert await page.locator("#import-preview tr[data-rule=bin-empty]").count() == 0
        assert "1 unchanged" in await page.inner_text("#import-preview")
        await page.click("dialog [data-act=cancel]")
        await page.wait_for_selector("#import-cancelled", timeout=T)
        stored = await _stored(page)
        assert stored["version"] == 3 and stored["enabled"] is False and "for: 5m" in stored["text"]

        # the same file again; a colleague changes the rule while the list is on screen: the list
        # comes again with what the import would replace now, and nothing is stored before it
        await page.set_input_files("#pack-file", str(pack))
        await page.wait_for_selector("#import-preview", timeout=T)
        retuned = tuned.replace("for: 5m", "for: 7m")
        assert (await _api(page, "PUT", "/api/v1/rules/bin-full", data=retuned.encode()))[0] == 200
        await page.click("dialog [data-act=ok]")
        await page.wait_for_selector("#import-moved", timeout=T)
        assert "version 4: admin changed a rule" in await page.inner_text(
            "#import-preview tr[data-rule=bin-full]"
        )
        stored = await _stored(page)
        assert stored["version"] == 4 and "for: 7m" in stored["text"]
        await page.click("dialog [data-act=ok]")
        await page.wait_for_selector("#rules-msg .ok-box", timeout=T)
        stored = await _stored(page)
        assert stored["version"] == 5 and stored["enabled"] is True and "for: 1m" in stored["text"]
        assert page.errors == []


async def _log_in_here(page: Any, name: str, password: str, then: str) -> None:
    """Log in on this tab's login page, then open `then`."""
    await page.goto("/login?next=" + then)
    await page.wait_for_selector("#login-form:not([hidden])", timeout=T)
    await page.fill("#login-name", name)
    await page.fill("#login-password", password)
    await page.click("#login-submit")
    await page.wait_for_function(
        "p => document.getElementById('view')?.dataset.ready === p", arg=then, timeout=T
    )


async def test_the_text_kept_after_a_session_ended_goes_back_to_its_author_only(
    tmp_path: Path, browser: Any
) -> None:
    async with running_site(tmp_path, {"devices": []}) as rt:
        assert rt.state is not None
        page = await logged_in_page(browser, rt)
        assert (await _api(page, "POST", "/api/v1/rules", data=TEXT.encode()))[0] == 201
        ops = {"Authorization": f"Bearer {create_token(rt.state, 'ops', ['read', 'admin'])}"}
        user = {"name": "tech2", "password": "tech2-password-ok", "role": "technician"}
        assert (await page.request.post("/api/v1/users", data=user, headers=ops)).status == 201
        await open_page(page, "/rules/bin-full")
        edited = (await page.input_value("#rule-text")).replace("value >= 85", "value >= 25")
        await page.fill("#rule-text", edited)
        await page.wait_for_selector("#rule-status.ok", timeout=T)
        for s in (await (await page.request.get("/api/v1/sessions", headers=ops)).json())["sessions"]:
            assert (await page.request.delete(f"/api/v1/sessions/{s['id']}", headers=ops)).status in (
                200,
                204,
            )
        await page.fill("#rule-text", edited + "# more\n")
        await page.wait_for_selector("#session-ended", timeout=T)

        # another user at this browser opens the rule: the stored text, not the admin's draft
        await _log_in_here(page, "tech2", "tech2-password-ok", "/rules/bin-full")
        assert await page.locator("#draft-restored").count() == 0
        assert "value >= 85" in await page.input_value("#rule-text")

        # its author, back at this browser, gets it
        await _log_in_here(page, "admin", PASSWORD, "/rules/bin-full")
        await page.wait_for_selector("#draft-restored", timeout=T)
        assert await page.input_value("#rule-text") == edited + "# more\n"
        assert page.errors == []
