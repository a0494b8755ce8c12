"""The console's own state: operators (hashed passwords, roles) and uploaded content.

One SQLite file, ``<data_root>/console/console.sqlite`` (WAL mode, one connection per call,
so the API's worker threads and the ``muma console`` CLI can use it at the same time):

- ``operators``: name, role (``editor`` or ``admin``), scrypt hash of the password;
- ``uploads``: every uploaded item with its review status (``pending`` -> ``approved`` or
  ``rejected``; an approved item can be withdrawn, which rejects it);
- ``meta``: the key that signs session cookies, generated on first use (never in the
  repository, survives restarts so sessions do too).

Passwords are hashed with :func:`hashlib.scrypt` (n=2**14, r=8, p=1, 16-byte salt).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_.-]{2,31}$")
MIN_PASSWORD = 10


class Role(StrEnum):
    """What an operator may do: editors upload and review; admins also manage operators."""

    EDITOR = "editor"
    ADMIN = "admin"


class Status(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


class StoreError(ValueError):
    """A request the store refuses (bad name, weak password, unknown item...)."""


def hash_password(password: str) -> str:
    """``scrypt$n$r$p$salt$hash`` (base64) of ``password``."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32
    )
    encode = base64.b64encode
    return (
        f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${encode(salt).decode()}${encode(digest).decode()}"
    )


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches a :func:`hash_password` string (constant-time compare)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


# Verifying against this when the name is unknown costs the same time as a real check.
_DUMMY_HASH = hash_password(secrets.token_urlsafe(16))


@dataclass(frozen=True)
class Operator:
    name: str
    role: Role
    created_at: float
    active: bool


@dataclass(frozen=True)
class Upload:
    """One uploaded item and its review state (times are epoch seconds)."""

    item_id: str
    domain: str
    title: str
    text: str
    category: str
    creator_id: str
    duration_s: float | None
    status: Status
    uploaded_by: str
    uploaded_at: float
    reviewed_by: str | None
    reviewed_at: float | None
    note: str

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "status": str(self.status)}


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS operators (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('editor', 'admin')),
    password_hash TEXT NOT NULL,
    created_at REAL NOT NULL,
    active INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS uploads (
    item_id TEXT PRIMARY KEY,
    domain TEXT NOT NULL,
    title TEXT NOT NULL,
    text TEXT NOT NULL,
    category TEXT NOT NULL,
    creator_id TEXT NOT NULL,
    duration_s REAL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'rejected')),
    uploaded_by TEXT NOT NULL,
    uploaded_at REAL NOT NULL,
    reviewed_by TEXT,
    reviewed_at REAL,
    note TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS uploads_status ON uploads (status, uploaded_at);
"""


def store_path(data_root: Path) -> Path:
    """Where the console's SQLite file lives under the data root."""
    return Path(data_root) / "console" / "console.sqlite"


class ConsoleStore:
    """Operators and uploads in one SQLite file (see the module docstring).

    Args:
        path: The SQLite file (created with its folder when missing).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._generation = 0
        self._lock = threading.Lock()
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=10.0)
        db.row_factory = sqlite3.Row
        try:
            with db:  # one transaction: committed on success, rolled back on error
                yield db
        finally:
            db.close()

    @property
    def generation(self) -> int:
        """Bumped by every write of this process (readers refresh their caches on change)."""
        return self._generation

    def _bump(self) -> None:
        with self._lock:
            self._generation += 1

    # ------------------------------------------------------------------------- secret
    def secret_key(self) -> str:
        """The session-signing key, created on first use."""
        with self._connect() as db:
            db.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('session_key', ?)",
                (secrets.token_urlsafe(48),),
            )
            return str(db.execute("SELECT value FROM meta WHERE key='session_key'").fetchone()[0])

    # ---------------------------------------------------------------------- operators
    def add_operator(self, name: str, password: str, role: Role | str) -> Operator:
        """Create an operator.

        Raises:
            StoreError: Bad name, short password, unknown role, or the name exists.
        """
        name = name.strip().lower()
        if not NAME_PATTERN.match(name):
            raise StoreError(
                "name: 3-32 characters, lowercase letters, digits, '.', '_' or '-', "
                "starting with a letter"
            )
        if len(password) < MIN_PASSWORD:
            raise StoreError(f"password: at least {MIN_PASSWORD} characters")
        try:
            role = Role(role)
        except ValueError:
            raise StoreError(f"role: one of {', '.join(r.value for r in Role)}") from None
        now = time.time()
        try:
            with self._connect() as db:
                db.execute(
                    "INSERT INTO operators (name, role, password_hash, created_at) "
                    "VALUES (?, ?, ?, ?)",
                    (name, role.value, hash_password(password), now),
                )
        except sqlite3.IntegrityError:
            raise StoreError(f"name: an operator called {name!r} exists already") from None
        self._bump()
        return Operator(name, role, now, True)

    def authenticate(self, name: str, password: str) -> Operator | None:
        """The active operator with this name and password, else None (same cost either way)."""
        with self._connect() as db:
            row = db.execute(
                "SELECT * FROM operators WHERE name = ?", (name.strip().lower(),)
            ).fetchone()
        if row is None:
            verify_password(password, _DUMMY_HASH)
            return None
        if not verify_password(password, row["password_hash"]) or not row["active"]:
            return None
        return _operator(row)

    def operator(self, name: str) -> Operator | None:
        with self._connect() as db:
            row = db.execute("SELECT * FROM operators WHERE name = ?", (name,)).fetchone()
        return _operator(row) if row else None

    def operators(self) -> list[Operator]:
        with self._connect() as db:
            rows = db.execute("SELECT * FROM operators ORDER BY name").fetchall()
        return [_operator(row) for row in rows]

    def set_active(self, name: str, active: bool) -> None:
        """Enable or disable an operator (disabled operators cannot log in; sessions end).

        Raises:
            StoreError: Unknown operator, or disabling the last active admin.
        """
        with self._connect() as db:
            row = db.execute("SELECT * FROM operators WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise StoreError(f"no operator called {name!r}")
            if not active and row["role"] == Role.ADMIN and row["active"]:
                admins = db.execute(
                    "SELECT COUNT(*) FROM operators WHERE role = 'admin' AND active = 1"
                ).fetchone()[0]
                if admins <= 1:
                    raise StoreError("the last active admin cannot be disabled")
            db.execute("UPDATE operators SET active = ? WHERE name = ?", (int(active), name))
        self._bump()

    # ------------------------------------------------------------------------ uploads
    def add_upload(self, fields: dict[str, Any], uploaded_by: str) -> Upload:
        """Store a validated upload as ``pending`` with a new ``up-`` item id."""
        item_id = f"up-{secrets.token_hex(6)}"
        now = time.time()
        with self._connect() as db:
            db.execute(
                "INSERT INTO uploads (item_id, domain, title, text, category, creator_id, "
                "duration_s, status, uploaded_by, uploaded_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    item_id,
                    fields["domain"],
                    fields["title"],
                    fields.get("text") or "",
                    fields["category"],
                    fields["creator_id"],
                    fields.get("duration_s"),
                    Status.PENDING.value,
                    uploaded_by,
                    now,
                ),
            )
        self._bump()
        upload = self.upload(item_id)
        assert upload is not None
        return upload

    def upload(self, item_id: str) -> Upload | None:
        with self._connect() as db:
            row = db.execute("SELECT * FROM uploads WHERE item_id = ?", (item_id,)).fetchone()
        return _upload(row) if row else None

    def uploads(self, status: Status | None = None, limit: int = 500) -> list[Upload]:
        """Uploads (of one status), newest first."""
        query, args = "SELECT * FROM uploads", ()
        if status is not None:
            query, args = query + " WHERE status = ?", (status.value,)
        with self._connect() as db:
            rows = db.execute(f"{query} ORDER BY uploaded_at DESC LIMIT {int(limit)}", args)
            return [_upload(row) for row in rows.fetchall()]

    def review(self, item_id: str, status: Status, reviewer: str, note: str = "") -> Upload:
        """Approve or reject a pending item, or withdraw (reject) an approved one.

        Raises:
            StoreError: Unknown item, or a transition that is not allowed.
        """
        if status is Status.PENDING:
            raise StoreError("an item cannot be sent back to pending")
        with self._connect() as db:
            row = db.execute("SELECT status FROM uploads WHERE item_id = ?", (item_id,)).fetchone()
            if row is None:
                raise StoreError(f"no uploaded item {item_id!r}")
            current = Status(row["status"])
            allowed = current is Status.PENDING or (
                current is Status.APPROVED and status is Status.REJECTED
            )
            if not allowed:
                raise StoreError(f"item {item_id} is {current}; it cannot become {status}")
            db.execute(
                "UPDATE uploads SET status = ?, reviewed_by = ?, reviewed_at = ?, note = ? "
                "WHERE item_id = ?",
                (status.value, reviewer, time.time(), note, item_id),
            )
        self._bump()
        upload = self.upload(item_id)
        assert upload is not None
        return upload


def _operator(row: sqlite3.Row) -> Operator:
    return Operator(row["name"], Role(row["role"]), row["created_at"], bool(row["active"]))


def _upload(row: sqlite3.Row) -> Upload:
    values = dict(row)
    values["status"] = Status(values["status"])
    return Upload(**values)
