"""Feedback in the app: 👍 / 👎 / save / tag edits write to the store at click time and change what each tab
shows at once; the profile picker switches and forgets profiles; a real browser keeps likes over a reload.

Each AppTest uses its own SQLite store in a temp folder (``ui.profile.store`` points at it), so nothing
here touches the real ``data/feedback.sqlite3``.
"""

from __future__ import annotations

import re

import pytest
from streamlit.testing.v1 import AppTest

from core.feedback import FeedbackStore


@pytest.fixture()
def store(tmp_path, monkeypatch):
    """A private store, and the app's one store pointed at it."""
    import ui.profile

    db = FeedbackStore.open(f"sqlite:///{tmp_path / 'feedback.sqlite3'}", images_dir=tmp_path / "images")
    monkeypatch.setattr(ui.profile, "store", lambda: db)
    yield db
    db.close()


def _me(store: FeedbackStore) -> str:
    """The key of the one profile the session created (its first click makes one; no name selects it)."""
    [key] = store.profiles(include_reserved=True)
    return key


def _texts(at: AppTest) -> str:
    parts = [e.value for kind in ("markdown", "caption", "info", "error", "warning", "success")
             for e in getattr(at, kind)]
    return "\n".join(str(p) for p in parts)


def _keys(at: AppTest, prefix: str) -> list[str]:
    return [b.key for b in at.button if b.key and b.key.startswith(prefix)]


# ---------------------------------------------------------------------------------------------
# Music


@pytest.fixture(scope="module")
def music_bundle():
    from music.data import load_dataset
    from music.mf.train import train

    data = load_dataset("simulated", n_users=80, n_songs=250, n_artists=30, seed=2)
    return train("simulated", data=data, force=True, mf_params={"epochs": 4})


def _music() -> None:
    import ui.music

    ui.music.render()


def _mine(at: AppTest) -> list[str]:
    """Item ids of "Your picks", in order (from their 👍 buttons' keys)."""
    return [k[len("mrate_mine_"):-len("_like")] for k in _keys(at, "mrate_mine_") if k.endswith("_like")]


def test_music_likes_fold_in_dislikes_disappear(music_bundle, store):
    at = AppTest.from_function(_music, default_timeout=180).run()
    assert not at.exception, at.exception
    assert "No likes yet" in _texts(at)
    before = _mine(at)
    assert len(before) == 10

    liked = []
    for n in (1, 2):  # like the top pick, twice: each click changes the picks at once
        liked.append(_mine(at)[0])
        at.button(key=f"mrate_mine_{liked[-1]}_like").click().run()
        assert not at.exception, at.exception
        assert set(store.likes(_me(store), "music")) == {f"simulated:{i}" for i in liked}  # written at click time
        assert f"Picks folded in from your {n} like" in _texts(at)
    after = _mine(at)
    assert len(after) == 10 and after != before and not set(liked) & set(after)  # new picks, likes not re-offered

    # a dislike of a listener's pick: gone from every list at once, and stays gone
    user = at.selectbox(key="music_user").value
    listener_pick = at.dataframe[0].value["title"].iloc[0]
    item = next(k for k in _keys(at, "mrate_listener_") if k.endswith("_dislike"))
    item = item[len("mrate_listener_"):-len("_dislike")]
    at.button(key=f"mrate_listener_{item}_dislike").click().run()
    assert store.dislikes(_me(store), "music") == [f"simulated:{item}"]
    assert listener_pick not in list(at.dataframe[0].value["title"])
    assert len(at.dataframe[0].value) == 10  # refilled from further down the list
    assert not any(item in k for k in _keys(at, "mrate_"))  # not in picks, search or "up next"
    assert at.selectbox(key="music_user").value == user

    # the new-listener view keeps the profile's picks; the mode switch writes nothing
    at.radio(key="music_mode").set_value("A new listener").run()
    assert not at.exception
    assert "Picks folded in from your 2 likes" in _texts(at)
    assert len(store.likes(_me(store), "music")) == 2 and len(store.events()) == 3


def test_music_search_lets_a_new_listener_like_songs(music_bundle, store):
    at = AppTest.from_function(_music, default_timeout=180).run()
    at.radio(key="music_mode").set_value("A new listener").run()
    from music.mf.train import load_bundle

    catalog = load_bundle("simulated").mf.catalog
    artist = catalog.artists[0]
    at.text_input(key="music_search").set_value(artist).run()
    found = [k[len("mrate_search_"):-len("_like")] for k in _keys(at, "mrate_search_") if k.endswith("_like")]
    assert found and all(catalog.artists[catalog.items.index(i)] == artist for i in found)
    at.button(key=f"mrate_search_{found[0]}_like").click().run()
    assert store.likes(_me(store), "music") == [f"simulated:{found[0]}"]
    assert "Picks folded in from your 1 like " in _texts(at)


# ---------------------------------------------------------------------------------------------
# The profile picker


def _picker_and_music() -> None:
    from ui.profile import render_picker

    render_picker()
    import ui.music

    ui.music.render()


def test_profiles_create_switch_and_forget(music_bundle, store):
    at = AppTest.from_function(_picker_and_music, default_timeout=180).run()
    assert not at.exception, at.exception
    assert "p" not in at.query_params and "profile: none yet" in _texts(at)
    at.sidebar.text_input(key="profile_new_name").set_value("ada")
    at.sidebar.button[0].click().run()  # the form's "Create and switch"
    ada = _me(store)
    assert ada.startswith("p-") and "ada" not in ada and store.profiles() == []  # keyed, never listed by name
    assert list(at.query_params["p"]) == [ada] or at.query_params["p"] == ada
    assert "profile: ada" in _texts(at) and "ada" in [t.value for t in at.sidebar.text]
    item = _mine(at)[0]
    at.button(key=f"mrate_mine_{item}_like").click().run()
    assert store.likes(ada, "music") == [f"simulated:{item}"]

    # a new profile named "bob": ada's likes do not apply
    at.sidebar.text_input(key="profile_new_name").set_value("bob")
    at.sidebar.button[0].click().run()
    bob = next(k for k in store.profiles(include_reserved=True) if k != ada)
    assert "profile: bob" in _texts(at) and "No likes yet" in _texts(at)

    # back to ada (the picker lists the two profiles this session opened), then forget her
    assert at.sidebar.selectbox(key=f"profile_pick_{bob}").options == ["ada (…" + ada[-4:] + ")",
                                                                          "bob (…" + bob[-4:] + ")"]
    at.sidebar.selectbox(key=f"profile_pick_{bob}").set_value(ada).run()
    assert "Picks folded in from your 1 like " in _texts(at)
    assert at.sidebar.button(key="profile_forget").disabled
    at.sidebar.checkbox(key="profile_forget_sure").check().run()
    at.sidebar.button(key="profile_forget").click().run()
    assert not at.exception, at.exception
    assert store.profiles(include_reserved=True) == [bob] and store.events() == []
    assert any("Forgot ada" in s.value for s in at.sidebar.success)


def test_a_name_in_the_url_opens_nothing(music_bundle, store):
    """``?profile=NAME`` and ``?p=NAME`` select nothing; only a known link key opens its profile."""
    store.create_profile("alice")
    store.record("alice", "music", "simulated:1", "like")
    for param, value in (("profile", "alice"), ("p", "alice"), ("p", "p-" + "A" * 22)):
        at = AppTest.from_function(_picker_and_music, default_timeout=180)
        at.query_params[param] = value
        at.run()
        assert not at.exception, at.exception
        assert "profile: none yet" in _texts(at) and "No likes yet" in _texts(at)
        assert param not in at.query_params and at.sidebar.error  # dropped, with a message
    assert store.likes("alice", "music") == ["simulated:1"]


def test_a_login_decides_the_profile(music_bundle, store, monkeypatch):
    """Behind Streamlit's OIDC login the profile is the account (st.user), never a name or a link."""
    import ui.profile
    from core.identity import login_key

    monkeypatch.setattr(ui.profile, "login_configured", lambda: True)
    monkeypatch.setattr(ui.profile, "_login_info", lambda: {
        "is_logged_in": True, "iss": "https://id", "sub": "Ada-42", "email": "Ada@Example.org",
        "email_verified": True})
    other = ui.profile.anonymous_profile("someone else")
    store.open_profile(other.key, other.display)
    at = AppTest.from_function(_picker_and_music, default_timeout=180)
    at.query_params["p"] = other.key  # a link in the URL cannot override the login
    at.query_params["profile"] = "someone-else"
    at.run()
    assert not at.exception, at.exception
    assert [t.value for t in at.sidebar.text] == ["ada@example.org"]
    assert not [s for s in at.sidebar.selectbox if (s.key or "").startswith("profile_pick")]
    item = _mine(at)[0]
    at.button(key=f"mrate_mine_{item}_like").click().run()
    assert store.likes(login_key("https://id", "Ada-42"), "music") == [f"simulated:{item}"]
    assert store.events(other.key) == [] and "p" not in at.query_params


def test_before_logging_in_nothing_is_read_or_written(music_bundle, store, monkeypatch):
    import ui.profile

    monkeypatch.setattr(ui.profile, "login_configured", lambda: True)
    monkeypatch.setattr(ui.profile, "_login_info", lambda: None)
    at = AppTest.from_function(_picker_and_music, default_timeout=180).run()
    assert not at.exception, at.exception
    assert at.sidebar.button(key="profile_login") and not at.sidebar.text_input
    item = _mine(at)[0]
    at.button(key=f"mrate_mine_{item}_like").click().run()
    assert any("Log in to keep likes" in e.value for e in at.error)
    assert store.profiles(include_reserved=True) == [] and store.events() == []


def _review() -> None:
    import ui.review

    ui.review.render()


def test_the_review_page_checks_the_admin_again_at_click_time(store, monkeypatch):
    """Only an admin sees pending edits; a click from a page drawn while admin is refused once that ends."""
    import io

    from PIL import Image

    import ui.profile

    settings = {"admins": ["boss@example.org"]}
    monkeypatch.setattr(ui.profile, "login_configured", lambda: True)
    monkeypatch.setattr(ui.profile, "settings", lambda: settings)
    monkeypatch.setattr(ui.profile, "_login_info", lambda: {
        "is_logged_in": True, "iss": "https://id", "sub": "boss", "email": "boss@example.org", "email_verified": True})
    author = ui.profile.anonymous_profile("Ann")
    store.open_profile(author.key, author.display)
    buf = io.BytesIO()
    Image.new("RGB", (30, 20), (10, 20, 200)).save(buf, format="PNG")
    edit = store.store_tagged_image(author.key, buf.getvalue(), ["sky"])

    at = AppTest.from_function(_review, default_timeout=60).run()
    assert not at.exception, at.exception
    assert [t.value for t in at.text][:2] == ["#sky", "Ann"]
    settings["admins"] = []  # no longer an admin, the page still shows the button
    at.button(key=f"review_accept_{edit.id}").click().run()
    assert any("Only administrators" in e.value for e in at.error)
    assert [r.review for r in store.tagged_images()] == ["pending"]
    assert not at.button  # and the page now shows nothing to decide

    settings["admins"] = ["boss@example.org"]
    at = AppTest.from_function(_review, default_timeout=60).run()
    at.button(key=f"review_reject_{edit.id}").click().run()
    assert [r.review for r in store.tagged_images()] == ["rejected"]
    assert any("No tag edits are waiting" in i.value for i in at.info)


# ---------------------------------------------------------------------------------------------
# Fashion


@pytest.fixture(scope="module")
def clothes_catalog(models_dir):
    """The shipped Tux Paint clothes as the Fashion tab offers them: an ordinary catalog of the catalog store."""
    from core.catalog.jobs import add_catalog

    return add_catalog("tuxpaint-clothes", "shipped:tuxpaint-clothes", update=True)


def _fashion() -> None:
    import ui.fashion

    ui.fashion.render()


def _grid_ids(at: AppTest, section: str) -> list[str]:
    prefix = f"fashion_own_{section}_"
    return [k[len(prefix):-len("_like")] for k in _keys(at, prefix) if k.endswith("_like")]


def _png_of(item: str) -> bytes:
    import io

    from fashion.data import load_catalog

    catalog = load_catalog("tuxpaint-clothes")
    buf = io.BytesIO()
    catalog.image(catalog.ids.index(item)).save(buf, "PNG")
    return buf.getvalue()


def test_fashion_like_reranks_dislike_hides_save_lists(clothes_catalog, store):
    at = AppTest.from_function(_fashion, default_timeout=240).run()
    at.selectbox(key="fashion_catalog").set_value("tuxpaint-clothes").run()
    at.file_uploader(key="fashion_own_image").set_value(("jeans.png", _png_of("clothes/bluejeans1"),
                                                         "image/png")).run()
    assert not at.exception, at.exception
    before = _grid_ids(at, "r")
    assert len(before) == 10 and "re-ranked" not in _texts(at) and "like what you liked" not in _texts(at)

    liked = before[-1]  # like the last result: the ranking moves toward it
    at.button(key=f"fashion_own_r_{liked}_like").click().run()
    assert not at.exception, at.exception
    assert store.likes(_me(store), "fashion") == [f"tuxpaint-clothes/{liked}"]
    after = _grid_ids(at, "r")
    assert after != before and after.index(liked) < before.index(liked)

    gone = after[0]
    at.button(key=f"fashion_own_r_{gone}_dislike").click().run()
    assert store.dislikes(_me(store), "fashion") == [f"tuxpaint-clothes/{gone}"]
    assert gone not in _grid_ids(at, "r")

    keep = _grid_ids(at, "r")[1]
    at.button(key=f"fashion_own_r_{keep}_save").click().run()
    assert store.saved(_me(store), "fashion") == [f"tuxpaint-clothes/{keep}"]
    assert _grid_ids(at, "saved") == [keep] and "Your saved list (1)" in [e.label for e in at.expander]
    at.button(key=f"fashion_own_saved_{keep}_unsave").click().run()
    assert store.saved(_me(store), "fashion") == []
    assert _grid_ids(at, "saved") == []


# ---------------------------------------------------------------------------------------------
# Product search


@pytest.fixture(scope="module")
def tiny_catalog(models_dir):
    from multimodal.data import load_tuxpaint_catalog
    from multimodal.train import ProjectionConfig, build_index

    try:
        catalog = load_tuxpaint_catalog(limit=40)
    except Exception as exc:  # noqa: BLE001 - no Tux Paint stamps on this machine
        pytest.skip(f"Tux Paint stamps unavailable: {exc}")
    build_index(catalog, projection_config=ProjectionConfig(epochs=40))
    return catalog


def _products() -> None:
    import ui.multimodal

    ui.multimodal.render()


def _products_shown(at: AppTest) -> list[str]:
    return [k[len("mm_fb_"):-len("_like")] for k in _keys(at, "mm_fb_") if k.endswith("_like")]


def test_product_search_like_reranks_dislike_hides(tiny_catalog, store):
    at = AppTest.from_function(_products, default_timeout=240).run()
    item = tiny_catalog.products[3]
    at.text_input(key="mm_text").set_value(item.title).run()
    assert not at.exception, at.exception
    before = _products_shown(at)
    assert len(before) == 10

    liked = before[-1]
    at.button(key=f"mm_fb_{liked}_like").click().run()
    assert not at.exception, at.exception
    assert [k.split("/", 1)[1] for k in store.likes(_me(store), "multimodal")] == [liked]
    assert "re-ranked by your 1 like" in _texts(at)
    after = _products_shown(at)
    assert after != before and after.index(liked) < before.index(liked)

    gone = after[0]
    at.button(key=f"mm_fb_{gone}_dislike").click().run()
    assert gone not in _products_shown(at) and "1 dislike" in _texts(at)
    keep = _products_shown(at)[0]
    at.button(key=f"mm_fb_{keep}_save").click().run()
    assert [k.split("/", 1)[1] for k in store.saved(_me(store), "multimodal")] == [keep]
    assert f"mm_fbsaved_{keep}_unsave" in _keys(at, "mm_fbsaved_")  # listed in "Your saved list"


# ---------------------------------------------------------------------------------------------
# Hashtags: the tag editor under the suggestions


def _tag_editor() -> None:
    from types import SimpleNamespace

    from PIL import Image

    import ui.hashtag

    image = Image.new("RGB", (64, 48), (200, 30, 30))
    suggested = [SimpleNamespace(tag=t, source="concept") for t in ("cat", "animal", "red")]
    ui.hashtag.tag_editor(image, suggested, "d" * 40, "fused@1")


def test_hashtag_remove_add_and_save_tags(store):
    at = AppTest.from_function(_tag_editor, default_timeout=60).run()
    key = "hashtag_edit_" + "d" * 16
    at.multiselect(key=f"{key}_keep").set_value(["cat", "red"])
    at.text_input(key=f"{key}_add").set_value("#kitten, sofa")
    at.button(key=f"{key}_save").click().run()
    assert not at.exception, at.exception
    [record] = store.tagged_images(_me(store))
    assert record.tags == ["cat", "red", "kitten", "sofa"]
    assert store.image_path(record.sha256).is_file()
    signals = {(e.signal, e.value) for e in store.events(_me(store), "hashtag")}
    assert signals == {("tag_accepted", "cat"), ("tag_accepted", "red"), ("tag_removed", "animal"),
                       ("tag_added", "kitten"), ("tag_added", "sofa")}
    assert any("Saved 4 tags" in s.value for s in at.success)

    at.text_input(key=f"{key}_add").set_value("bad tag!!")
    at.button(key=f"{key}_save").click().run()
    assert any("not saved" in e.value for e in at.error)  # a refused tag: a message, nothing written
    assert len(store.tagged_images(_me(store))) == 1


# ---------------------------------------------------------------------------------------------
# A real browser: like two songs, the picks change; reload, the likes are still there


@pytest.mark.slow(reason="browser")
@pytest.mark.browser
def test_browser_music_likes_survive_a_reload(music_bundle, browser_page, app_url, artifacts_dir):
    page = browser_page
    page.goto(app_url)
    page.get_by_role("tab", name="Music").click()
    music = page.get_by_role("tabpanel", name="Music")
    music.get_by_text("No likes yet").wait_for()

    def mine() -> list[str]:
        keys = page.eval_on_selector_all(
            ".stElementContainer[class*='st-key-mrate_mine_']",
            "els => els.map(e => Array.from(e.classList).find(c => c.startsWith('st-key-mrate_mine_')))")
        return list(dict.fromkeys(k[len("st-key-mrate_mine_"):-len("_like")] for k in keys if k.endswith("_like")))

    def settled() -> list[str]:
        """The picks once the rerun is over (the same ten twice in a row, a second apart)."""
        last: list[str] = []
        for _ in range(120):
            now = mine()
            if len(now) == 10 and now == last:
                return now
            last = now
            page.wait_for_timeout(1000)
        raise AssertionError(f"the picks did not settle: {last}")

    before = settled()
    liked = []
    for n in (1, 2):  # like the top pick twice; each click changes the picks
        liked.append(settled()[0])
        page.locator(f".stElementContainer.st-key-mrate_mine_{liked[-1]}_like button").first.click()
        music.get_by_text(re.compile(f"folded in from your {n} like")).wait_for()
        page.wait_for_function("(k) => !document.querySelector('.stElementContainer.st-key-mrate_mine_' + k + '_like')", arg=liked[-1])
    after = settled()
    assert after != before and not set(liked) & set(after)
    page.screenshot(path=str(artifacts_dir / "feedback_music.png"), full_page=True)

    assert re.search(r"[?&]p=p-", page.url), page.url  # the first like created a profile and its link
    page.reload()
    page.get_by_role("tab", name="Music").click()
    music = page.get_by_role("tabpanel", name="Music")
    music.get_by_text(re.compile("folded in from your 2 likes")).wait_for()
    assert re.search(r"[?&]p=p-[A-Za-z0-9_-]{22}$", page.url), page.url  # the profile's link
    assert settled() == after  # the same profile, the same likes, the same picks
