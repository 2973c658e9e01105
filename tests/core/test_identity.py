"""Who is who: login identities, unguessable link profiles, admins, the heavy-work policy, the store's
reserved namespaces and the review gate in front of ``train --with-feedback``."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from core.feedback import FeedbackError, FeedbackStore
from core.feedback.store import close_engine
from core.identity import (NOBODY, Identity, IdentityError, anonymous_profile, from_login, is_link_key, is_loopback,
                           login_key, may_run_heavy)

ISS = "https://id.example.org"


def _user(sub="Ab12", email="ann@example.org", verified=True, **extra):
    return {"is_logged_in": True, "iss": ISS, "sub": sub, "email": email, "email_verified": verified, **extra}


def test_login_is_keyed_by_issuer_and_subject_with_case_kept():
    ann = from_login(_user(), admins=[])
    assert ann.logged_in and not ann.admin and ann.key.startswith("oidc:") and len(ann.key) <= 64
    assert ann.key == login_key(ISS, "Ab12")
    assert from_login(_user(sub="ab12"), admins=[]).key != ann.key  # subjects differing in case are two people
    assert from_login({**_user(), "iss": "https://other.example"}, admins=[]).key != ann.key
    # the e-mail never decides the key: another subject claiming the same address is someone else
    assert from_login(_user(sub="zz", email="ann@example.org"), admins=[]).key != ann.key
    assert "ann" not in ann.key and ISS not in ann.key
    with pytest.raises(IdentityError):
        from_login({"is_logged_in": True, "email": "ann@example.org", "email_verified": True}, admins=[])


def test_an_unverified_email_is_never_shown_nor_trusted_for_admin():
    unverified = from_login(_user(verified=False), admins=["ann@example.org"])
    assert "ann@example.org" not in unverified.display and not unverified.admin
    assert from_login(_user(verified="false"), admins=["ann@example.org"]).admin is False
    assert from_login({**_user(), "email_verified": None}, admins=["ann@example.org"]).admin is False
    verified = from_login(_user(email="Ann@Example.org", verified=True), admins=["ANN@example.org"])
    assert verified.display == "ann@example.org" and verified.admin
    assert from_login(_user(verified="true"), admins=["ann@example.org"]).admin  # providers sending a string


def test_admins_by_issuer_and_subject_match_exactly():
    assert from_login(_user(sub="Ab12", verified=False), admins=[f"{ISS}|Ab12"]).admin
    assert not from_login(_user(sub="ab12", verified=False), admins=[f"{ISS}|Ab12"]).admin  # case kept
    assert not from_login(_user(sub="Ab12"), admins=["https://evil.example|Ab12"]).admin  # another issuer
    assert not from_login(_user(sub="Ab12"), admins=[]).admin


def test_anonymous_profiles_have_unguessable_keys_and_a_chosen_name():
    keys = {anonymous_profile("Ann").key for _ in range(200)}
    assert len(keys) == 200 and all(is_link_key(k) for k in keys)
    who = anonymous_profile("  Ann  ")
    assert who.display == "Ann" and not who.logged_in and not who.admin and "Ann" not in who.key
    for bad in ("", "   ", "x" * 65, "a\nb", None):
        with pytest.raises(IdentityError):
            anonymous_profile(bad)
    assert not is_link_key("alice") and not is_link_key("p-alice") and not is_link_key(login_key(ISS, "1"))


def test_heavy_work_needs_an_admin_with_a_login_and_follows_allow_builds_without():
    admin = Identity("oidc:" + "a" * 40, "a", logged_in=True, admin=True)
    user = Identity("oidc:" + "b" * 40, "b", logged_in=True, admin=False)
    for who, allowed in ((admin, True), (user, False), (NOBODY, False)):
        ok, why = may_run_heavy(who, login_configured=True, server_address="0.0.0.0", settings={})
        assert ok is allowed and (bool(why) is not allowed)
        assert why.count(".") <= 1  # one sentence
    local = dict(login_configured=False, settings={})
    assert may_run_heavy(NOBODY, server_address="127.0.0.1", **local)[0]
    assert may_run_heavy(NOBODY, server_address="localhost", **local)[0]
    assert may_run_heavy(NOBODY, server_address="::1", **local)[0]
    refused, why = may_run_heavy(NOBODY, server_address="", **local)  # Streamlit's default: every interface
    assert not refused and "every network interface" in why
    assert not may_run_heavy(NOBODY, server_address="0.0.0.0", **local)[0]
    assert may_run_heavy(NOBODY, server_address="0.0.0.0", login_configured=False,
                         settings={"allow_builds": "always"})[0]
    assert not may_run_heavy(NOBODY, server_address="127.0.0.1", login_configured=False,
                             settings={"allow_builds": "never"})[0]
    assert not may_run_heavy(NOBODY, server_address="127.0.0.1", login_configured=False,
                             settings={"allow_builds": "yes please"})[0]
    assert is_loopback("127.0.0.2") and not is_loopback("10.0.0.1") and not is_loopback("")


# ----------------------------------------------------------------------------------------------
# the store's namespaces and the review gate


@pytest.fixture()
def store(tmp_path):
    url = f"sqlite:///{tmp_path / 'feedback.sqlite3'}"
    db = FeedbackStore.open(url, images_dir=tmp_path / "images")
    yield db
    close_engine(url)


def _png(color) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), color).save(buf, format="PNG")
    return buf.getvalue()


def test_login_and_link_profiles_are_never_listed_nor_created_by_name(store):
    ann = from_login(_user(), admins=[])
    link = anonymous_profile("Bob")
    store.open_profile(ann.key, ann.display)
    store.open_profile(link.key, link.display)
    store.create_profile("legacy")
    assert store.profiles() == ["legacy"]
    assert set(store.profiles(include_reserved=True)) == {"legacy", ann.key, link.key}
    for reserved in (login_key(ISS, "not-yet-logged-in"), anonymous_profile("x").key, "oidc:anything", "p-planted"):
        with pytest.raises(FeedbackError):
            store.create_profile(reserved)  # nobody plants a profile someone logging in later would inherit
    assert store.create_profile(ann.key) == ann.key  # an existing one is returned as is
    for not_a_key in ("alice", "p-short", "oidc:" + "g" * 40):
        with pytest.raises(FeedbackError):
            store.open_profile(not_a_key, "x")
    assert store.display_name(link.key) == "Bob" and store.display_name(anonymous_profile("x").key) is None
    assert store.has_profile(ann.key) and not store.has_profile("nobody")


def test_only_accepted_tag_edits_are_trained_on(store):
    from hashtag.data import Vocab
    from hashtag.feedback import load_feedback_pairs, pending_edits, record_tag_edits, review_edit

    ann, admin = anonymous_profile("Ann"), Identity("oidc:" + "c" * 40, "boss", logged_in=True, admin=True)
    store.open_profile(ann.key, ann.display)
    kept = record_tag_edits(store, ann.key, _png((200, 0, 0)), ["cat"], ["cat", "sofa"])
    dropped = record_tag_edits(store, ann.key, _png((0, 0, 200)), ["dog"], ["spam"])
    assert [r.id for r in pending_edits(store)] == [kept.id, dropped.id]
    assert [r.display for r in pending_edits(store)] == ["Ann", "Ann"]

    class Dataset:  # the one attribute load_feedback_pairs reads
        vocab = Vocab(["cat"], {"cat": 1})

    assert load_feedback_pairs(Dataset(), store).records == []  # nothing reviewed: nothing trained on
    with pytest.raises(FeedbackError, match="Only administrators"):
        review_edit(store, kept.id, "accepted", ann, (False, "Only administrators may review."))
    assert len(pending_edits(store)) == 2  # a refusal wrote nothing
    review_edit(store, kept.id, "accepted", admin, (True, ""))
    review_edit(store, dropped.id, "rejected", admin, (True, ""))
    with pytest.raises(FeedbackError):
        review_edit(store, kept.id, "maybe", admin, (True, ""))
    pairs = load_feedback_pairs(Dataset(), store)
    assert [r.sha256 for r in pairs.records] == [kept.sha256] and "spam" not in pairs.new_tags
    # new tags for an accepted picture send it back to the review list
    record_tag_edits(store, ann.key, _png((200, 0, 0)), ["cat"], ["cat", "bed"])
    assert [r.sha256 for r in pending_edits(store)] == [kept.sha256]
    assert load_feedback_pairs(Dataset(), store).records == []
