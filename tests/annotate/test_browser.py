"""One real-browser run: the server, `streamlit run` of the app, and headless Chromium driven by Playwright.

An annotator logs in, ranks a prompt with a tie, submits and sees the next prompt; the ranking is stored with
the tie, and an answer holding <script> and raw HTML shows as text and never runs. Screenshots of every page
go to test-artifacts/screenshots/ (kept as test artifacts; docs/screenshots/ holds chosen copies).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from serving.engines.launcher import free_port
from serving.ui_launch import streamlit_command
from tests.support.ui_data import PASSWORDS, SCRIPT_ANSWER

SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


@pytest.fixture(scope="module")
def app_url(ui_server, tiny_hf_engine, tmp_path_factory):
    """`streamlit run` of the app against the module's ui_server, with the session's transformers engine (tiny,
    tiny-lora) registered for the arena; yields (app url, server)."""
    from serving.engines.registry import save_engine

    save_engine(tiny_hf_engine)  # in ui_server's own PREFLAB_HOME: no engines or state from elsewhere
    port = free_port()
    log = open(tmp_path_factory.mktemp("browser-log") / "streamlit.log", "wb")
    proc = subprocess.Popen(
        streamlit_command(port), env={**os.environ, "PREFLAB_URL": ui_server.url}, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180  # a loaded 2-core machine can take minutes to import streamlit
        while True:
            try:
                if httpx.get(f"{url}/_stcore/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"streamlit did not start; see {log.name}")
            time.sleep(0.3)
        yield url, ui_server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def open_logged_in(browser, url: str, name: str):
    page = browser.new_page(viewport={"width": 1440, "height": 1100})
    page.set_default_timeout(60_000)  # generous: CI machines are often loaded
    page.goto(url, wait_until="domcontentloaded", timeout=180_000)  # the first load compiles a big bundle
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password", exact=True).fill(PASSWORDS[name])
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("heading", name="Rank answers").wait_for()
    page.wait_for_timeout(500)
    return page


def settle(page) -> None:
    """Wait until the script run is over and no placeholder is left (what a person would look at)."""
    page.wait_for_timeout(300)
    page.locator("[data-testid='stStatusWidget']").wait_for(state="hidden")
    page.locator("[data-testid='stSkeleton']").first.wait_for(state="hidden")
    page.wait_for_timeout(300)


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    settle(page)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_annotator_ranks_with_a_tie_and_script_stays_text(browser, app_url):
    url, server = app_url
    page = browser.new_page(viewport={"width": 1440, "height": 1500})  # tall: the whole ranking page in one shot
    page.set_default_timeout(60_000)  # generous: CI machines are often loaded
    page.goto(url, wait_until="domcontentloaded", timeout=180_000)  # the first load compiles a big bundle
    page.get_by_label("User name").wait_for()
    shot(page, "login")
    page.get_by_label("User name").fill("ann")
    page.get_by_label("Password", exact=True).fill(PASSWORDS["ann"])
    page.keyboard.press("Enter")  # the login form submits on Enter
    page.get_by_text("Rank answers").wait_for()

    # the first prompt holds the answer with <script> and raw HTML: shown as text, never run
    page.get_by_text("Say hello in Chinese and Spanish").wait_for()
    page.get_by_text("<script>document.title", exact=False).wait_for()
    assert page.get_by_text('<img src=x onerror="window.__pwned=2">', exact=False).count() == 1
    assert page.evaluate("window.__pwned") is None
    assert page.title() != "pwned"
    assert page.locator("[data-testid='stMarkdownContainer'] script").count() == 0
    assert page.locator("[data-testid='stMarkdownContainer'] img[src='x']").count() == 0
    assert page.get_by_text("你好！这是中文回答", exact=False).count() == 1
    page.get_by_role("button", name="Submit ranking").wait_for()
    shot(page, "rank")

    row = server.store.query(
        "SELECT a.id, a.prompt_id, CAST(a.answer_order AS VARCHAR) AS answer_order FROM assignments a "
        "JOIN users u ON u.id = a.user_id WHERE u.name = 'ann' AND a.status = 'leased'"
    )[0]
    # ranks by position: Answer 2 best, Answers 1 and 3 tied behind it (each picker is a labelled radio group)
    for position, rank in ((0, 2), (1, 1), (2, 2)):
        group = page.get_by_role("radiogroup", name=f"Rank for Answer {position + 1}")
        group.get_by_role("radio", name=str(rank), exact=True).click()
        page.wait_for_timeout(300)
    page.get_by_text("Answer 2 > Answer 1 = Answer 3").wait_for()
    page.get_by_role("button", name="Submit ranking").click()

    # the next prompt shows at once
    page.get_by_text("Ranking saved", exact=False).first.wait_for()
    page.get_by_text("Say hello in Chinese and Spanish").wait_for(state="detached")
    page.get_by_text("Write a Python greeting function.").wait_for()
    page.get_by_role("button", name="Submit ranking").wait_for()
    shot(page, "rank-next")

    import json

    order = json.loads(row["answer_order"])
    with server.api("adm") as api:
        detail = api.get(f"/api/prompts/{row['prompt_id']}/rankings").json()
    mine = [r for r in detail["rankings"] if r["annotator"] == "ann"]
    assert len(mine) == 1 and mine[0]["status"] == "submitted"
    assert mine[0]["ranks"] == {str(order[0]): 2, str(order[1]): 1, str(order[2]): 2}
    assert mine[0]["time_on_task_ms"] > 0
    texts = {a["id"]: a["text"] for a in detail["answers"]}
    assert SCRIPT_ANSWER in texts.values()  # stored exactly as the model wrote it

    # keyboard only on the next prompt: type the order, Enter applies it, Ctrl+Enter submits
    second = server.store.query(
        "SELECT a.prompt_id, CAST(a.answer_order AS VARCHAR) AS answer_order FROM assignments a "
        "JOIN users u ON u.id = a.user_id WHERE u.name = 'ann' AND a.status = 'leased'"
    )[0]
    box = page.get_by_role("textbox", name="Type the order")
    box.fill("4 > 1 = 3 > 2")
    box.press("Enter")
    page.get_by_text("Answer 4 > Answer 1 = Answer 3 > Answer 2").wait_for()
    page.keyboard.press("Control+Enter")
    page.get_by_text("Write a Python greeting function.").wait_for(state="detached")
    order = json.loads(second["answer_order"])
    ranks = {
        row["g"]: row["r"]
        for row in server.store.query(
            "SELECT i.generation_id AS g, i.rank AS r FROM ranking_items i JOIN rankings r ON r.id = i.ranking_id "
            "JOIN users u ON u.id = r.user_id WHERE u.name = 'ann' AND r.prompt_id = ?",
            [second["prompt_id"]],
        )
    }
    assert ranks == {order[3]: 1, order[0]: 2, order[2]: 2, order[1]: 3}
    page.close()


def test_every_page_renders_for_its_role(browser, app_url):
    url, server = app_url
    page = open_logged_in(browser, url, "adm")  # an admin has every page
    page.get_by_role("link", name="Review").click()
    page.get_by_text("Ranks side by side").first.wait_for()
    shot(page, "review")
    for link, tabs in (("Data", ["Import", "Charts"]), ("Admin", ["Users", "Datasets"])):
        page.get_by_role("link", name=link).click()
        page.get_by_role("heading", name=link).wait_for()
        for i, tab in enumerate(tabs):
            if i:  # the first tab is open already
                page.get_by_role("tab", name=tab).click()
            shot(page, f"{link.lower()}-{tab.lower().replace(' ', '-')}")
    for link, heading in (("Training", "Training"), ("Loop", "Run the loop")):
        page.get_by_role("link", name=link).click()
        page.get_by_role("heading", name=heading).wait_for()
        shot(page, link.lower())

    # a blind battle: the question goes to two anonymous models, the vote reveals them and counts
    page.get_by_role("link", name="Arena").click()
    page.get_by_role("heading", name="Arena").wait_for()
    page.get_by_placeholder("Ask both models…").fill("¿Cómo se dice hola en chino? 你好 👋")
    page.keyboard.press("Enter")
    page.get_by_role("button", name="👈 A is better").click(timeout=180_000)
    page.get_by_text("Model A was", exact=False).wait_for()
    votes = server.store.query("SELECT winner FROM arena_votes")
    assert [v["winner"] for v in votes] == ["a"]
    # after the vote, a thumbs under each answer: Tab's way in, then D gives model B a thumbs-down
    page.get_by_role("radiogroup", name="Thumbs for model B").get_by_role("radio").first.focus()
    page.keyboard.press("d")
    page.get_by_text("Saved: 👎 Bad").wait_for()
    thumbs = server.store.query("SELECT label, source FROM feedback WHERE source = 'arena'")
    assert thumbs == [{"label": False, "source": "arena"}]
    shot(page, "arena")
    page.get_by_role("link", name="Leaderboard").click()
    page.get_by_role("heading", name="Leaderboard").wait_for()
    shot(page, "leaderboard")
    page.close()

    # a visitor typing a page's URL gets the login page: no page runs before the role check
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    for path in ("admin", "review"):
        page.goto(f"{url}/{path}", wait_until="domcontentloaded", timeout=180_000)
        page.get_by_label("User name").wait_for()
        settle(page)
        assert page.get_by_text("Add a user").count() == 0
        assert page.get_by_role("link", name="Admin").count() == 0
        assert page.get_by_role("link", name="Review").count() == 0
    page.close()


def test_reload_keeps_the_sign_in_number_keys_rank_and_popovers_close(browser, app_url):
    url, server = app_url
    page = open_logged_in(browser, url, "ann2")
    settle(page)
    messages = page.locator("[data-testid='stChatMessage']")
    shown = messages.first.inner_text()  # the prompt ann2 holds (which one depends on the tests before)
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies["preflab_session"]["sameSite"] == "Strict" and cookies["preflab_session"]["expires"] > time.time()
    assert cookies["preflab_session"]["value"] not in page.url

    # F5: a new Streamlit session, signed in again from the cookie
    page.reload(wait_until="domcontentloaded")
    page.get_by_role("heading", name="Rank answers").wait_for()
    assert page.get_by_label("User name").count() == 0
    messages.first.wait_for()
    assert messages.first.inner_text() == shown  # the same lease, held across the reload

    # headings carry no link anchor a Tab would stop at
    settle(page)
    assert page.locator("h1 a[href^='#'], h2 a[href^='#'], h3 a[href^='#'], h5 a[href^='#']").count() == 0

    # a digit ranks the answer whose picker has focus
    # (digits up to 2: the prompt ann2 holds may have only two answers)
    page.get_by_role("radiogroup", name="Rank for Answer 1").get_by_role("radio", name="1", exact=True).focus()
    page.keyboard.press("2")
    page.get_by_text("Your order: Answer 1", exact=False).wait_for()
    page.get_by_role("radiogroup", name="Rank for Answer 2").get_by_role("radio", name="2", exact=True).focus()
    page.keyboard.press("1")
    page.get_by_text("Answer 2 > Answer 1").wait_for()

    # skip from the popover: the next prompt arrives with the popover closed
    page.get_by_role("button", name="Skip").first.click()
    page.get_by_text("Why skip?").wait_for()
    page.get_by_role("button", name="Skip this prompt").click()
    page.get_by_role("button", name="Submit ranking").wait_for()
    settle(page)
    page.get_by_text("Skipped").first.wait_for()
    skipped = server.store.query(
        "SELECT count(*) AS n FROM rankings r JOIN users u ON u.id = r.user_id "
        "WHERE u.name = 'ann2' AND r.status = 'skipped'"
    )
    assert skipped[0]["n"] == 1
    assert not page.get_by_text("Why skip?").is_visible()
    assert not page.get_by_text("What is wrong?").is_visible()
    notice = page.get_by_text("Skipped").first  # the badge under the title (after its icon), clear of the counters
    notice.wait_for()
    notice = notice.bounding_box()
    counters = page.get_by_text("Left in queue").first.bounding_box()
    assert notice["x"] + notice["width"] < counters["x"]
    shot(page, "rank-after-skip")

    # logging out clears the cookie: a reload shows the login page
    page.get_by_role("button", name="Log out").click()
    page.get_by_label("User name").wait_for()
    settle(page)
    assert "preflab_session" not in {c["name"] for c in page.context.cookies()}
    page.reload(wait_until="domcontentloaded")
    page.get_by_label("User name").wait_for()
    page.close()


def test_training_page_follows_the_run_just_started(browser, app_url, tiny_model_dir):
    """An earlier run is on show; starting one selects the new run, and its label turns from running to finished
    without a reload (a real SFT step on the tiny model)."""
    from playwright.sync_api import expect

    from db import runs

    url, server = app_url
    old = runs.create_run(server.store, stage="dpo", run_dir=str(tiny_model_dir.parent / "old-run"), base="tiny",
                          parent=None, snapshot_id="ab" * 32, config={}, created_by="adm")  # fmt: skip
    runs.mark_done(server.store, old, "finished", metrics={})
    page = open_logged_in(browser, url, "adm")
    page.get_by_role("link", name="Training").click()
    page.get_by_role("heading", name="Training").wait_for()
    picker = page.get_by_role("combobox", name="Run")  # the selected run's label is the combobox's value
    expect(picker).to_have_value(f"#{old} dpo · finished")
    page.get_by_role("combobox", name="Stage").click()
    page.get_by_role("option", name="sft", exact=True).click()
    settle(page)
    base = page.get_by_label("Base model (folder or registered name)")
    base.fill(str(tiny_model_dir))
    base.press("Tab")
    steps = page.get_by_label("max_steps", exact=True)
    steps.fill("1")
    steps.press("Tab")
    settle(page)
    page.get_by_role("button", name="Start training").click()
    settle(page)
    new = server.store.scalar("SELECT max(id) FROM runs")
    assert new != old
    expect(picker).to_have_value(re.compile(rf"^#{new} sft · "))  # the picker moved to the new run at once
    deadline = time.monotonic() + 300  # loading torch and TRL in the job takes a while on a loaded machine
    while (status := server.store.scalar("SELECT status FROM runs WHERE id = ?", [new])) == "running":
        assert time.monotonic() < deadline, "the one-step run did not end in 300 s"
        time.sleep(1)
    error = server.store.scalar("SELECT error FROM runs WHERE id = ?", [new])
    assert status == "finished", error
    expect(picker).to_have_value(f"#{new} sft · finished", timeout=30_000)  # the label follows, with no reload
    shot(page, "training")
    page.close()


def seed_quality(store, dataset: str = "sim-annotators") -> None:
    """Twenty simulated annotators (careful, sloppy, two spammers) over ten days, one of them paused, so the
    Annotators page has a table, a scatter and lines to show."""
    from db import quality
    from db.annotator_sim import SimConfig, simulate

    simulate(store, dataset, SimConfig(prompts=240, gold_rate=0.1, seed=3))
    dataset_id = store.scalar("SELECT id FROM datasets WHERE name = ?", [dataset])
    with store.transaction() as c:  # the simulation's clock runs an afternoon: spread each annotator's work
        c.execute(
            """UPDATE rankings SET created_at = TIMESTAMP '2026-03-02 09:00:00'
                   + to_days(CAST(floor(t.n * 10 / t.total) AS INTEGER)) + to_minutes(CAST(t.n % 480 AS INTEGER))
               FROM (SELECT id, row_number() OVER (PARTITION BY user_id ORDER BY created_at) - 1 AS n,
                            count(*) OVER (PARTITION BY user_id) AS total
                     FROM rankings WHERE prompt_id IN (SELECT id FROM prompts WHERE dataset_id = ?)) t
               WHERE rankings.id = t.id""",
            [dataset_id],
        )
    quality.set_control(store, dataset_id, "sloppy-17", paused=True, weight=0.5, by="rev")


def test_annotators_page_on_simulated_annotators(browser, app_url):
    """The Annotators page over twenty simulated annotators (the README screenshot) and pausing one; then a
    reviewer marks a prompt gold in Review."""
    url, server = app_url
    seed_quality(server.store)
    page = open_logged_in(browser, url, "rev")
    page.set_viewport_size({"width": 1440, "height": 2650})  # tall: the whole page in one shot
    page.get_by_role("link", name="Annotators").click()
    page.get_by_role("heading", name="Annotators").wait_for()
    page.get_by_role("combobox", name="Dataset").click()
    page.get_by_role("option", name="sim-annotators").click()
    page.get_by_role("heading", name="Speed against agreement").wait_for()
    page.locator("[data-testid='stVegaLiteChart']").nth(1).wait_for()
    settle(page)
    page.wait_for_timeout(1500)  # the charts draw after the script run ends
    shot(page, "annotators")
    page.get_by_role("button", name="Pause").click()
    page.get_by_text("paused in sim-annotators", exact=False).wait_for()
    paused = server.store.scalar("SELECT count(*) FROM annotator_controls WHERE paused")
    assert paused == 2

    # Review: the shown prompt becomes a gold item with the order given in the answer cards
    page.get_by_role("link", name="Review").click()
    page.get_by_role("heading", name="Review").first.wait_for()  # "Gold item" shows once a prompt is picked
    settle(page)
    gold_before = server.store.scalar("SELECT count(*) FROM gold_items")
    prompt_id = server.store.scalar(
        "SELECT min(p.id) FROM prompts p JOIN datasets d ON d.id = p.dataset_id "
        "WHERE d.name = 'sim-annotators' AND p.id NOT IN (SELECT prompt_id FROM gold_items)"
    )
    page.get_by_role("combobox", name="Dataset").click()
    page.get_by_role("option", name="sim-annotators").click()
    settle(page)
    box = page.get_by_label("or prompt id")
    box.fill(str(prompt_id))
    box.press("Enter")
    page.get_by_role("heading", name="Gold item").wait_for()
    page.get_by_text(f"Prompt #{prompt_id} is not a gold item").wait_for()
    pickers = page.get_by_role("radiogroup", name=re.compile(r"^Rank for Answer \d+$"))
    for i in range(pickers.count()):
        group = page.get_by_role("radiogroup", name=f"Rank for Answer {i + 1}")
        group.get_by_role("radio", name=str(i + 1), exact=True).click()
        page.wait_for_timeout(300)
    page.get_by_role("button", name="Mark as gold").click()
    page.get_by_text("is a gold item (whole order)", exact=False).first.wait_for()
    assert server.store.scalar("SELECT count(*) FROM gold_items") == gold_before + 1
    assert server.store.scalar("SELECT kind FROM gold_items WHERE prompt_id = ?", [prompt_id]) == "order"
    page.close()


def test_ranks_with_helpsteer2_aspects_and_a_rationale_from_the_keyboard(browser, app_url):
    from playwright.sync_api import expect

    url, server = app_url
    # a dataset of its own (listed first, so the Rank page opens on it): the tests before took ui-demo's slots
    name = "aa-aspects"
    record = {
        "prompt": "Say hello in Chinese and Spanish 🌍",
        "responses": [
            "你好！¡Hola! 👋",
            "Hello.",
            "Hola y 你好, con una tabla:\n\n| es | zh |\n|---|---|\n| hola | 你好 |",
        ],
        "ranks": [1, 2, 2],
        "annotator": "ana",
    }
    with server.api("adm") as api:
        form = {"dataset": name, "format": "ranked"}
        line = json.dumps(record, ensure_ascii=False).encode("utf-8")
        r = api.post("/api/import", data=form, files={"file": ("hola.jsonl", line, "application/octet-stream")})
        assert r.status_code == 200, r.text
        assert api.patch(f"/api/datasets/{name}", json={"annotators_per_prompt": 2}).status_code == 200
        r = api.put(f"/api/datasets/{name}/settings", json={"aspects": "helpsteer2", "rationale": "optional"})
        assert r.status_code == 200, r.text
    page = browser.new_page(viewport={"width": 1440, "height": 1500})
    page.set_default_timeout(60_000)
    page.goto(url, wait_until="domcontentloaded", timeout=180_000)
    page.get_by_label("User name").fill("rev")
    page.get_by_label("Password", exact=True).fill(PASSWORDS["rev"])
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("heading", name="Rank answers").wait_for()
    page.get_by_role("radiogroup", name="helpfulness").first.wait_for()
    settle(page)
    k = page.get_by_role("radiogroup", name=re.compile(r"^Rank for Answer")).count()

    # answer 1 from the keyboard: a digit ranks it, A moves to its next aspect, a digit scores that
    page.get_by_role("radiogroup", name="Rank for Answer 1").get_by_role("radio").first.focus()
    page.keyboard.press("1")
    page.wait_for_timeout(400)
    for score in ("3", "4"):  # helpfulness, then correctness
        page.keyboard.press("a")
        page.keyboard.press(score)
        page.wait_for_timeout(400)
    checked = page.get_by_role("radiogroup", name="correctness").first.get_by_role("radio", name="4", exact=True)
    expect(checked).to_have_attribute("aria-checked", "true")
    for pos in range(1, k):  # the others with the mouse
        page.get_by_role("radiogroup", name=f"Rank for Answer {pos + 1}").get_by_role(
            "radio", name="2", exact=True
        ).click()
        page.get_by_role("radiogroup", name="helpfulness").nth(pos).get_by_role("radio", name="1", exact=True).click()
        page.wait_for_timeout(300)
    page.get_by_label("Why this order? (optional)").fill("La 1 es correcta y clara; 其他的太长 ✂️")
    page.get_by_text("Your order: Answer 1 >", exact=False).wait_for()
    shot(page, "rank-aspects")
    page.get_by_role("button", name="Submit ranking").click()
    page.get_by_text("Ranking saved", exact=False).first.wait_for()

    ranking = server.store.query(
        "SELECT r.id FROM rankings r JOIN users u ON u.id = r.user_id WHERE u.name = 'rev' AND r.source = 'human' "
        "ORDER BY r.id DESC LIMIT 1"
    )[0]["id"]
    rows = server.store.query(
        "SELECT t.aspect, t.value, i.position FROM ratings t JOIN ranking_items i "
        "ON i.ranking_id = t.ranking_id AND i.generation_id = t.generation_id WHERE t.ranking_id = ?",
        [ranking],
    )
    first = {r["aspect"]: r["value"] for r in rows if r["position"] == 0}
    assert first == {"helpfulness": 3, "correctness": 4}, rows
    assert sorted(r["value"] for r in rows if r["position"] != 0) == [1] * (k - 1)
    note = server.store.scalar("SELECT rationale FROM ranking_notes WHERE ranking_id = ?", [ranking])
    assert note == "La 1 es correcta y clara; 其他的太长 ✂️"
    page.close()
