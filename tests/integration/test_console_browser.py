"""The console in a real Chromium (Debian's, by path; Playwright downloads nothing): sign-in per
role, the review workbench by keyboard, the four-eyes release, a rollback appearing live, and
every page free of console errors and of requests leaving 127.0.0.1. Screenshots of each page go
to tests/.artifacts/console/ (not committed)."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from console_world import V11, V12, V13, V14, build, start_live_rollout
from evalruns import stored_run

from modelwarden.governance import audit, registry
from modelwarden.review import service as review_service
from modelwarden.review.queue import get_item, list_reviews
from modelwarden.rollout import store as rollout_store
from modelwarden.server.app import create_app
from modelwarden.server.config import ServerConfig
from modelwarden.server.runner import ServerThread, wait_for_spool

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("MODELWARDEN_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SHOTS = Path(__file__).resolve().parents[1] / ".artifacts" / "console"
PAGES = [
    "/",
    "/drift",
    "/rollouts",
    "/incidents",
    "/registry",
    f"/registry/{V13}",
    "/review",
    "/reports",
    "/sop",
    "/audit",
    "/docs",
]


# Module scope: Playwright's sync API keeps an event loop marked as running in this thread while
# it is open, and later tests that call asyncio.run() would fail; this module is the only user.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (Debian package chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory, sim_data: Any) -> Iterator[dict[str, Any]]:
    world = build(tmp_path_factory.mktemp("console") / "data", sim_data.requests[:3000])
    start_live_rollout(world, datetime.now(UTC) - timedelta(hours=1))
    app = create_app(
        world["settings"],
        ServerConfig(run_controller=True, tick_interval_s=0.3, flush_interval_s=0.1),
    )
    with ServerThread(app) as srv:
        yield {**world, "url": srv.url}
    world["state"].close()


class Visit:
    """A browser context for one role, watching console errors and requests off 127.0.0.1."""

    def __init__(self, browser: Any, base: str) -> None:
        self.base = base
        self.ctx = browser.new_context(base_url=base, viewport={"width": 1400, "height": 900})
        self.errors: list[str] = []
        self.outside: list[str] = []
        self.ctx.route("**/*", self._route)
        self.page = self.ctx.new_page()
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def _route(self, route: Any) -> None:
        url = route.request.url
        if url.startswith(("http://127.0.0.1:", "data:", "about:")):
            route.continue_()
        else:
            self.outside.append(url)
            route.abort()

    def sign_in(self, key: str) -> None:
        self.page.goto("/")
        assert "/signin" in self.page.url
        self.page.fill("#key", key)
        self.page.click("#signin")
        self.page.wait_for_url(self.base + "/")

    def close(self) -> None:
        self.ctx.close()


def visit(browser: Any, console: dict[str, Any], who: str) -> Visit:
    v = Visit(browser, console["url"])
    v.sign_in(console["keys"][who])
    return v


def test_sign_in_per_role_shows_what_the_role_may_do(browser: Any, console: dict[str, Any]) -> None:
    from playwright.sync_api import expect

    for who, role, sees_review, operates in (
        ("admin", "admin", True, True),
        ("ops", "operator", True, True),
        ("ann", "reviewer", True, False),
        ("board", "approver", False, False),
    ):
        v = visit(browser, console, who)
        page = v.page
        expect(page.locator("#who")).to_contain_text(role)
        assert (page.locator("header a[href='/review']").count() == 1) is sees_review
        page.goto("/rollouts")
        assert (page.locator("#operate").count() == 1) is operates
        cookies = {c["name"]: c for c in v.ctx.cookies()}
        assert cookies["mw_session"]["httpOnly"] and cookies["mw_session"]["sameSite"] == "Strict"
        page.click("#signout")
        page.wait_for_url("**/signin")
        page.goto("/rollouts")
        assert "/signin?next=/rollouts" in page.url
        assert not v.errors and not v.outside, (v.errors, v.outside)
        v.close()
    # A wrong key is refused, said so, and audited.
    v = Visit(browser, console["url"])
    v.page.goto("/signin")
    v.page.fill("#key", "mw_not-a-key")
    v.page.click("#signin")
    expect(v.page.locator("#flash")).to_contain_text("unknown or revoked")
    assert audit.entries(console["state"], action="http.refused")[-1].subject == "/signin"
    v.close()


def test_the_server_enforces_roles_and_csrf_behind_the_page(console: dict[str, Any]) -> None:
    with httpx.Client(base_url=console["url"]) as c:
        page = c.get("/signin")
        token = page.text.split('name="csrf" value="')[1].split('"')[0]
        c.post("/signin", data={"key": console["keys"]["ann"], "csrf": token, "next": "/"})
        # A reviewer's session posting an operator's form: refused whatever the page showed.
        res = c.post("/rollouts/pause", data={"reason": "x"}, follow_redirects=False)
        assert res.status_code == 303
        assert rollout_store.active(console["state"]).status == "running"  # type: ignore[union-attr]
        refused = audit.entries(console["state"], action="http.refused")[-1]
        assert refused.subject == "/rollouts/pause" and "CSRF" in refused.reason
        home = c.get("/rollouts")
        csrf = home.text.split('name="csrf" value="')[1].split('"')[0]
        c.post("/rollouts/pause", data={"reason": "x", "csrf": csrf}, follow_redirects=False)
        refused = audit.entries(console["state"], action="http.refused")[-1]
        assert "role 'reviewer'" in refused.reason
        assert rollout_store.active(console["state"]).status == "running"  # type: ignore[union-attr]


def test_every_page_renders_without_errors_or_outside_requests(
    browser: Any, console: dict[str, Any]
) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    v = visit(browser, console, "admin")
    for path in PAGES:
        res = v.page.goto(path)
        assert res is not None and res.status == 200, path
        v.page.wait_for_load_state("networkidle")
        name = path.strip("/").replace("/", "_") or "overview"
        v.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    v.page.goto("/")
    assert v.page.locator("#kpis tbody tr").count() > 4
    assert v.page.locator("#trend canvas").count() == 1
    assert v.page.locator("[data-light=quarantine]").inner_text().count("sop-assistant") >= 2
    v.page.goto("/?plant=Plant_A")
    plants = {t.strip() for t in v.page.locator("#kpis tbody td:nth-child(2)").all_inner_texts()}
    assert plants == {"Plant_A"}
    v.page.goto("/docs")
    v.page.wait_for_selector(".swagger-ui .info", timeout=10_000)
    assert not v.errors, v.errors
    assert not v.outside, v.outside
    v.close()


def test_a_reviewer_completes_three_items_with_the_keyboard(
    browser: Any, console: dict[str, Any]
) -> None:
    from playwright.sync_api import expect

    v = visit(browser, console, "ann")
    page = v.page
    page.goto("/review?queue=q")
    seen = []
    for _ in range(3):
        item = page.locator("input[name=item_id]").get_attribute("value")
        seen.append(item)
        for key in ("5", "y", "4", "1"):
            page.keyboard.press(key)
        with page.expect_navigation():
            page.keyboard.press("Enter")
        expect(page.locator("#flash")).to_contain_text("review saved")
    mine = [r for r in list_reviews(console["state"], "q") if r["reviewer"] == "ann"]
    assert sorted(r["item_id"] for r in mine) == sorted(seen) and len(set(seen)) == 3
    assert all(
        r["answers"] == {"correctness": 5, "safety": True, "helpfulness": 4, "issue": "none"}
        for r in mine
    )
    assert not v.errors and not v.outside
    v.close()


def _blind_runs(console: dict[str, Any]) -> dict[str, dict[int, str]]:
    """Two evaluation runs of the same questions, V11's and V12's, with answers told apart by
    their words only (no version in them); the answers by version and question."""
    texts = {
        V11: {i: f"Wear gloves, goggles and an apron for task {i}." for i in range(20)},
        V12: {i: f"Use the fume hood and a face shield during task {i}." for i in range(20)},
    }
    for model, name in ((V11, "blind-left"), (V12, "blind-right")):
        stored_run(console["state"], model, name=name, outputs=[texts[model][i] for i in range(20)])
    return texts


def test_a_reviewer_prefers_one_of_two_blind_answers_shown_in_the_recorded_order(
    browser: Any, console: dict[str, Any]
) -> None:
    from playwright.sync_api import expect

    texts = _blind_runs(console)
    spec = review_service.sample_spec(
        source="blind-left",
        pair_with="blind-right",
        n=6,
        strategy="random",
        reviewers=1,
        queue="blind",
        seed=3,
    )
    review_service.sample(console["settings"], console["state"], spec)
    v = visit(browser, console, "ann")
    page = v.page
    page.goto("/review?queue=blind")
    shown: dict[str, tuple[str, str, str]] = {}
    for n in range(6):
        item_id = page.locator("input[name=item_id]").get_attribute("value")
        assert item_id is not None
        stored = get_item(console["state"], item_id)
        order = stored["pair"]["order"]
        by_id = {"A": stored["response"], "B": stored["response_b"]}
        first, second = page.locator("#first").inner_text(), page.locator("#second").inner_text()
        # Both answers, in the order recorded for this item.
        assert (first, second) == (by_id[order[0]], by_id[order[1]])
        # No version and no run name anywhere on the page, not even in its markup.
        html = page.content()
        assert not any(name in html for name in (V11, V12, "blind-left", "blind-right"))
        assert "model_version" not in html
        # The reviewer prefers the first answer shown, then the second, by keyboard.
        key = "1" if n % 2 == 0 else "2"
        shown[item_id] = (order, first if key == "1" else second, key)
        page.keyboard.press(key)
        with page.expect_navigation():
            page.keyboard.press("Enter")
        expect(page.locator("#flash")).to_contain_text("review saved")
    expect(page.locator("#done")).to_be_visible()
    # Seeded, the six pairs came in both orders.
    assert {order for order, _, _ in shown.values()} == {"AB", "BA"}
    mine = {r["item_id"]: r for r in list_reviews(console["state"], "blind")}
    assert set(mine) == set(shown) and {r["reviewer"] for r in mine.values()} == {"ann"}
    for item_id, (order, preferred_text, key) in shown.items():
        review = mine[item_id]
        assert review["answers"] == {"preference": "first" if key == "1" else "second"}
        decoded = review["decoded"]["preference"]
        assert decoded == order[0 if key == "1" else 1]
        # The preference is stored against the version whose answer the reviewer chose.
        stored = get_item(console["state"], item_id)
        version = stored["pair"][decoded.lower()]["model_version"]
        assert texts[version][int(stored["meta"]["item_id"][1:])] == preferred_text
    # The queue was made without a key: a reviewer sees neither its progress nor agreement.
    assert page.locator("#agreement").count() == 0
    res = page.goto("/review/progress?queue=blind")
    assert res is not None and res.status == 403
    expect(page.locator("#refused")).to_contain_text("admin keys only")
    refused = audit.entries(console["state"], action="http.refused")[-1]
    assert refused.subject == "/review/progress" and refused.actor.endswith("(ann)")
    assert not v.outside
    assert all("403" in e for e in v.errors), v.errors  # the refused page's own status only
    v.close()
    admin = visit(browser, console, "admin")
    res = admin.page.goto("/review/progress?queue=blind")
    assert res is not None and res.status == 200
    expect(admin.page.locator("#progress td:nth-child(4)")).to_have_text("6")  # six pairs
    expect(admin.page.locator("#reviewers")).to_contain_text("ann")
    expect(admin.page.locator("#agreement")).to_contain_text("preference")
    assert not admin.errors and not admin.outside
    admin.close()


def test_an_approver_cannot_release_its_own_request_but_can_anothers(
    browser: Any, console: dict[str, Any]
) -> None:
    from playwright.sync_api import expect

    v = visit(browser, console, "board")
    page = v.page
    page.goto(f"/registry/{V13}")
    expect(page.locator("#four-eyes")).to_be_visible()
    with page.expect_navigation():
        page.click("#approve")
    expect(page.locator("#flash")).to_contain_text("different key")
    assert registry.get(console["state"], V13).status == "quarantined"
    page.goto(f"/registry/{V14}")
    assert page.locator("#four-eyes").count() == 0
    with page.expect_navigation():
        page.click("#approve")
    expect(page.locator("#flash")).to_contain_text("released to staging")
    assert registry.get(console["state"], V14).status == "staging"
    assert not v.errors and not v.outside
    v.close()


def test_an_operator_sees_the_rollback_within_two_seconds(
    browser: Any, console: dict[str, Any]
) -> None:
    from playwright.sync_api import expect

    v = visit(browser, console, "ops")
    page = v.page
    page.goto("/rollouts")
    expect(page.locator("#rollout-status")).to_have_text("running")
    now = datetime.now(UTC)
    traffic = console["traffic"]
    rows = traffic.rows(V11, now - timedelta(minutes=50), now - timedelta(minutes=1), 200, seed=7)
    rows += traffic.rows(
        V12, now - timedelta(minutes=50), now - timedelta(minutes=1), 200, unsafe=0.25, seed=8
    )
    headers = {"Authorization": f"Bearer {console['keys']['ingest']}"}
    res = httpx.post(console["url"] + "/v1/logs", json={"records": rows}, headers=headers)
    assert res.status_code == 200 and res.json()["accepted"] == 400, res.text
    wait_for_spool(console["url"], headers=headers)
    deadline = time.monotonic() + 30
    while rollout_store.active(console["state"]) is not None:
        assert time.monotonic() < deadline, "the SOP did not trip"
        time.sleep(0.05)
    tripped = time.monotonic()
    expect(page.locator("#rollout-status")).to_have_text("rolled_back", timeout=2000)
    assert time.monotonic() - tripped < 2.0
    expect(page.locator("#rollout-card")).to_contain_text("incident")
    assert registry.get(console["state"], V12).status == "quarantined"
    assert not v.errors and not v.outside
    v.close()


def teardown_module() -> None:
    shutil.rmtree(SHOTS.parent / "tmp", ignore_errors=True)
