"""The console's store and the `muma console` commands: hashed passwords, roles, review rules."""

from __future__ import annotations

import sqlite3
import time

import pytest
from typer.testing import CliRunner

from muma.cli import app
from serving.console.auth import LoginThrottle, Sessions
from serving.console.store import ConsoleStore, Status, StoreError, store_path

runner = CliRunner()


def test_passwords_are_stored_as_salted_scrypt_hashes(tmp_path):
    store = ConsoleStore(tmp_path / "console.sqlite")
    store.add_operator("alice", "correct horse battery", "admin")
    store.add_operator("bob", "correct horse battery", "editor")
    rows = sqlite3.connect(tmp_path / "console.sqlite").execute(
        "SELECT password_hash FROM operators ORDER BY name"
    )
    hashes = [row[0] for row in rows]
    assert all(h.startswith("scrypt$") and "correct horse" not in h for h in hashes)
    assert hashes[0] != hashes[1]  # salted
    assert store.authenticate("alice", "correct horse battery").role == "admin"
    assert store.authenticate("alice", "correct horse batterY") is None
    with pytest.raises(StoreError, match="exists already"):
        store.add_operator("alice", "another long one", "editor")
    with pytest.raises(StoreError, match="role: one of editor, admin"):
        store.add_operator("carol", "another long one", "owner")


def test_review_transitions(tmp_path):
    store = ConsoleStore(tmp_path / "console.sqlite")
    fields = {"domain": "ad", "title": "Spring sale", "category": "retail", "creator_id": "shop"}
    item = store.add_upload(fields, "bob")
    assert item.status is Status.PENDING and item.item_id.startswith("up-")
    assert store.review(item.item_id, Status.APPROVED, "alice").status is Status.APPROVED
    assert store.review(item.item_id, Status.REJECTED, "alice").status is Status.REJECTED
    with pytest.raises(StoreError, match="cannot become approved"):
        store.review(item.item_id, Status.APPROVED, "alice")
    with pytest.raises(StoreError, match="no uploaded item"):
        store.review("up-missing", Status.APPROVED, "alice")


def test_sessions_are_signed_and_csrf_tokens_bound_to_them():
    sessions = Sessions("key-one")
    session = sessions.fresh("alice")
    cookie = sessions.cookie(session)
    assert sessions.read(cookie).operator == "alice"
    assert Sessions("key-two").read(cookie).operator is None  # another key: not accepted
    assert sessions.read(cookie[:-2] + "xx").operator is None
    assert sessions.csrf_ok(session, sessions.csrf_token(session))
    assert not sessions.csrf_ok(sessions.fresh("alice"), sessions.csrf_token(session))
    assert not sessions.csrf_ok(session, None)


def test_muma_console_add_user_and_list_users(tmp_path, monkeypatch):
    monkeypatch.setenv("MUMA_DATA_ROOT", str(tmp_path / "data"))
    added = runner.invoke(
        app,
        ["console", "add-user", "alice", "--role", "admin", "--password-stdin"],
        input="a-long-password\n",
    )
    assert added.exit_code == 0, added.output
    assert "added alice (admin)" in added.output
    store = ConsoleStore(store_path(tmp_path / "data"))
    assert store.authenticate("alice", "a-long-password") is not None
    weak = runner.invoke(app, ["console", "add-user", "bob", "--password-stdin"], input="short\n")
    assert weak.exit_code == 1 and "at least 10 characters" in weak.output
    listed = runner.invoke(app, ["console", "list-users"])
    assert listed.exit_code == 0 and listed.output.split() == ["alice", "admin", "active"]


def test_the_throttle_counts_failures_per_key_in_a_window():
    throttle = LoginThrottle(limit=2, window=0.3)
    keys = ["name:alice", "addr:10.0.0.1"]
    throttle.failed(keys)
    assert throttle.wait_seconds(keys) == 0
    throttle.failed(keys)
    assert 0 < throttle.wait_seconds(["name:alice"]) <= 0.3
    assert throttle.wait_seconds(["name:bob", "addr:10.0.0.2"]) == 0
    throttle.succeeded("name:alice")
    assert throttle.wait_seconds(["name:alice"]) == 0
    assert throttle.wait_seconds(["addr:10.0.0.1"]) > 0
    time.sleep(0.35)
    assert throttle.wait_seconds(keys) == 0
