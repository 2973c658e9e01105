"""Whose data is whose, tried in Chromium against the whole app, the way an attacker would.

- Without a login (the ``app_url`` server): a second browser cannot open, read, change or delete the first
  one's profile by its name (``?profile=alice``, ``?p=alice``) or a guessed key; the link itself does open it.
- A profile name that is Markdown (an image and a link) shows as plain text: no image request, no link.
- With a real OpenID Connect login (``oidc-provider-mock`` on a free port, a temporary secrets file passed
  with ``--secrets.files``, so the repo's files are untouched): two people each see only their own likes;
  an anonymous visitor sees no profile and reaches none by URL; a squatter whose unverified e-mail is the
  admin's gets neither her profile nor admin rights; only the admin gets the Review page and can accept an edit,
  and only the admin gets the Data tab's build form.
"""

from __future__ import annotations

import io
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
from PIL import Image

from conftest import ROOT, _free_port

pytestmark = [pytest.mark.browser, pytest.mark.slow(reason="drives the app in a browser")]

MARKDOWN_NAME = "![x](http://a/b.png)[Sign in](http://a)"


@pytest.fixture(scope="module")
def music_bundle(models_dir):
    """The small simulated music model the Music tab opens with."""
    from music.data import load_dataset
    from music.mf.train import train

    data = load_dataset("simulated", n_users=80, n_songs=250, n_artists=30, seed=2)
    return train("simulated", data=data, force=True, mf_params={"epochs": 4})


# ----------------------------------------------------------------------------------------------
# page helpers


def _open(context, url: str):
    page = context.new_page()
    page.set_default_timeout(120_000)
    page.goto(url)
    page.get_by_role("tab").first.wait_for()
    return page


def _music(page):
    page.get_by_role("tab", name="Music").click()
    panel = page.get_by_role("tabpanel", name="Music")
    panel.get_by_text("Your picks").wait_for()
    return panel


def _mine(page) -> list[str]:
    keys = page.eval_on_selector_all(
        ".stElementContainer[class*='st-key-mrate_mine_']",
        "els => els.map(e => Array.from(e.classList).find(c => c.startsWith('st-key-mrate_mine_')))")
    return list(dict.fromkeys(k[len("st-key-mrate_mine_"):-len("_like")] for k in keys if k.endswith("_like")))


def _settled(page) -> list[str]:
    """The picks once the rerun is over (the same ten twice in a row, a second apart)."""
    last: list[str] = []
    for _ in range(120):
        now = _mine(page)
        if len(now) == 10 and now == last:
            return now
        last = now
        page.wait_for_timeout(1000)
    raise AssertionError(f"the picks did not settle: {last}")


def _like_top(page, n_after: int) -> str:
    panel = _music(page)
    item = _settled(page)[0]
    page.locator(f".stElementContainer.st-key-mrate_mine_{item}_like button").first.click()
    panel.get_by_text(re.compile(f"folded in from your {n_after} like")).wait_for()
    return item


def _sidebar(page):
    return page.locator("[data-testid='stSidebar']")


def _create_profile(page, name: str) -> str:
    """Create a profile from the sidebar; returns its key (from the URL)."""
    side = _sidebar(page)
    side.get_by_role("textbox", name="New profile name").fill(name)
    side.get_by_role("button", name="Create and switch").click()
    page.wait_for_url(re.compile(r"[?&]p=p-[A-Za-z0-9_-]{22}$"))
    side.get_by_text("Active profile").wait_for()
    return re.search(r"p=(p-[A-Za-z0-9_-]{22})$", page.url).group(1)


def _store(url: str):
    from core.feedback import FeedbackStore

    return FeedbackStore.open(url)


# ----------------------------------------------------------------------------------------------
# without a login


def test_a_second_browser_cannot_reach_a_profile_by_name_or_guess(music_bundle, _browser, app_url, models_dir):
    db = _store(f"sqlite:///{models_dir / 'feedback.sqlite3'}")  # the app_url server's database
    first = _browser.new_context(viewport={"width": 1400, "height": 1600})
    page = _open(first, app_url)
    key = _create_profile(page, "alice")
    _like_top(page, 1)
    assert db.display_name(key) == "alice" and len(db.likes(key, "music")) == 1

    second = _browser.new_context(viewport={"width": 1400, "height": 1600})
    guesses = [("?profile=alice", "no longer opened by name"), ("?p=alice", "not known here"),
               ("?p=p-" + secrets.token_urlsafe(16), "not known here"), ("?p=" + key[:-1], "not known here")]
    for query, message in guesses:
        other = _open(second, f"{app_url}/{query}")
        side = _sidebar(other)
        side.get_by_text(message).wait_for()
        music = _music(other)
        music.get_by_text("No likes yet").wait_for()
        assert "alice" not in side.inner_text()  # the picker lists nothing this browser did not open
        assert side.get_by_text("Forget me").count() == 0  # nothing to delete: no profile is open
        assert key not in other.url
        other.close()
    assert db.display_name(key) == "alice" and len(db.likes(key, "music")) == 1  # unchanged, not deleted

    # the link is the key: with it, another browser does open the profile ("anyone with the link")
    shared = _open(second, f"{app_url}/?p={key}")
    _music(shared).get_by_text(re.compile("folded in from your 1 like")).wait_for()
    first.close()
    second.close()


def test_a_markdown_profile_name_renders_as_plain_text(music_bundle, _browser, app_url, artifacts_dir):
    context = _browser.new_context(viewport={"width": 1400, "height": 1600})
    page = _open(context, app_url)
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    _create_profile(page, MARKDOWN_NAME)
    _like_top(page, 1)  # the Music tab also shows the name ("Your picks (profile: …)")
    side = _sidebar(page)
    assert side.get_by_text(MARKDOWN_NAME, exact=True).count() >= 1  # the characters, as typed
    panel = page.get_by_role("tabpanel", name="Music")
    assert MARKDOWN_NAME in panel.inner_text()
    for scope in (side, panel):
        assert scope.locator("img[src*='//a/']").count() == 0
        assert scope.locator("a[href^='http://a']").count() == 0
        assert scope.get_by_role("link", name="Sign in").count() == 0
    page.screenshot(path=str(artifacts_dir / "profile_markdown_name.png"), full_page=True)

    # forgetting it shows the name in a message: still text
    side.locator("[data-testid='stExpander'] summary").filter(has_text="Forget me").click()
    side.get_by_text("Yes, delete it all").click()
    side.get_by_role("button", name="Forget me").click()
    side.get_by_text(re.compile(r"^Forgot ")).wait_for()
    assert MARKDOWN_NAME in side.inner_text() and side.locator("a[href^='http://a'], img[src*='//a/']").count() == 0
    assert not [u for u in requested if u.startswith("http://a/")]
    context.close()


# ----------------------------------------------------------------------------------------------
# with a real OpenID Connect login


ALICE = ("Alice-Sub-1", {"email": "alice@example.com", "email_verified": True, "name": "Alice"})
BOB = ("bob-sub-2", {"email": "bob@example.com", "email_verified": True})
MALLORY = ("mallory-3", {"email": "alice@example.com", "email_verified": False})  # claims the admin's address


@pytest.fixture(scope="module")
def oidc_issuer():
    """A local OpenID Connect provider with three predefined people, on a free port."""
    from oidc_provider_mock import User, run_server_in_thread

    users = [User(sub=sub, claims=claims) for sub, claims in (ALICE, BOB, MALLORY)]
    with run_server_in_thread(port=0, user_claims=users) as server:
        yield f"http://localhost:{server.server_port}"


@pytest.fixture(scope="module")
def login_app(oidc_issuer, models_dir, tmp_path_factory):
    """The whole app behind the login: secrets in a temporary file (``--secrets.files``), its own database."""
    folder = tmp_path_factory.mktemp("login-app")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    secrets_file = folder / "secrets.toml"
    secrets_file.write_text(
        "[auth]\n"
        f'redirect_uri = "{url}/oauth2callback"\n'
        f'cookie_secret = "{secrets.token_hex(16)}"\n'
        'client_id = "recs-studio-test"\n'
        'client_secret = "not-a-secret"\n'
        f'server_metadata_url = "{oidc_issuer}/.well-known/openid-configuration"\n'
        "\n[recs]\n"
        'admins = ["alice@example.com"]\n')
    database = f"sqlite:///{folder / 'feedback.sqlite3'}"
    env = dict(os.environ, RECS_MODELS_DIR=str(models_dir), PYTHONPATH=str(ROOT), RECS_DATABASE_URL=database,
               RECS_DATA_DIR=str(folder / "data"))
    log = open(folder / "streamlit.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.headless", "true",
         "--server.address", "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false",
         "--secrets.files", str(secrets_file)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 90
        while True:
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"the login app did not start; see {log.name}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        yield {"url": url, "database": database, "data": folder / "data", "issuer": oidc_issuer}
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def _login(browser, app: dict, sub: str):
    """A fresh browser context, logged in as ``sub`` through the provider's form."""
    context = browser.new_context(viewport={"width": 1400, "height": 1600})
    page = _open(context, app["url"])
    _sidebar(page).get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/oauth2/authorize"))
    page.get_by_role("button", name=sub, exact=True).click()
    page.wait_for_url(re.compile(re.escape(app["url"])))
    _sidebar(page).get_by_text(re.compile("^Signed in as")).wait_for()
    page.get_by_role("tab").first.wait_for()
    return context, page


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (20, 160, 60)).save(buf, format="PNG")
    return buf.getvalue()


def test_real_login_separates_people_and_only_the_admin_reviews(music_bundle, _browser, login_app, artifacts_dir):
    from core.identity import login_key

    db = _store(login_app["database"])
    issuer = login_app["issuer"]
    alice_key, bob_key = login_key(issuer, ALICE[0]), login_key(issuer, BOB[0])

    # an anonymous visitor: the tabs work, no profile is open, and no URL opens one
    anon = _browser.new_context(viewport={"width": 1400, "height": 1600})
    for query in ("", "?profile=alice@example.com", f"?p={alice_key}", "?p=alice"):
        page = _open(anon, f"{login_app['url']}/{query}")
        side = _sidebar(page)
        side.get_by_role("button", name="Log in").wait_for()
        _music(page).get_by_text("No likes yet").wait_for()
        assert "@" not in side.inner_text() and side.get_by_role("textbox", name="New profile name").count() == 0
        assert page.get_by_role("tab", name="Review").count() == 0
        page.close()

    alice_ctx, alice = _login(_browser, login_app, ALICE[0])
    assert "alice@example.com" in _sidebar(alice).inner_text() and "administrator" in _sidebar(alice).inner_text()
    alice_likes = {_like_top(alice, 1)}
    bob_ctx, bob = _login(_browser, login_app, BOB[0])
    _music(bob).get_by_text("No likes yet").wait_for()  # Bob does not see Alice's like
    bob_likes = {_like_top(bob, 1)}
    bob_likes.add(_like_top(bob, 2))
    assert {k.split(":", 1)[1] for k in db.likes(alice_key, "music")} == alice_likes
    assert {k.split(":", 1)[1] for k in db.likes(bob_key, "music")} == bob_likes
    alice.reload()
    _music(alice).get_by_text(re.compile("folded in from your 1 like ")).wait_for()  # still only her own

    # an anonymous click records nothing
    page = _open(anon, login_app["url"])
    item = (_music(page), _settled(page)[0])[1]
    page.locator(f".stElementContainer.st-key-mrate_mine_{item}_like button").first.click()
    page.get_by_text("Log in to keep likes").first.wait_for()
    assert set(db.profiles(include_reserved=True)) == {alice_key, bob_key}
    anon.close()

    # the squatter: Alice's address, unverified: her own empty profile, no admin rights, no e-mail shown
    mallory_ctx, mallory = _login(_browser, login_app, MALLORY[0])
    _music(mallory).get_by_text("No likes yet").wait_for()
    assert "alice@example.com" not in _sidebar(mallory).inner_text()
    assert mallory.get_by_role("tab", name="Review").count() == 0
    mallory_ctx.close()

    # Bob's tag edit waits for review; Bob (not an admin) has no Review page, Alice accepts it
    from core.feedback import FeedbackStore

    seeded = FeedbackStore.open(login_app["database"], images_dir=login_app["data"] / "feedback")
    edit = seeded.store_tagged_image(bob_key, _png(), ["grass", "green"])
    bob.reload()
    bob.get_by_role("tab").first.wait_for()
    _sidebar(bob).get_by_text(re.compile("^Signed in as")).wait_for()
    assert bob.get_by_role("tab", name="Review").count() == 0
    alice.get_by_role("tab", name="Review").click()
    review = alice.get_by_role("tabpanel", name="Review")
    review.get_by_text("#grass #green").wait_for()
    review.get_by_text("bob@example.com").wait_for()  # who made the edit (verified e-mail)
    alice.screenshot(path=str(artifacts_dir / "login_review.png"), full_page=True)
    alice.locator(f".st-key-review_accept_{edit.id} button").click()
    review.get_by_text("No tag edits are waiting.").wait_for()
    [accepted] = seeded.tagged_images(review="accepted")
    assert accepted.id == edit.id and seeded.tagged_images(review="pending") == []

    # catalog builds on the Data tab: Bob (not an admin) is told why and gets no form; Alice gets the form
    bob.get_by_role("tab", name="Data").click()
    data = bob.get_by_role("tabpanel", name="Data")
    data.get_by_text(re.compile("Building catalogs is not open to you")).wait_for()
    assert data.get_by_role("button", name="Build this catalog").count() == 0
    alice.get_by_role("tab", name="Data").click()
    alice.get_by_role("tabpanel", name="Data").get_by_role("button", name="Build this catalog").wait_for()
    alice_ctx.close()
    bob_ctx.close()
