"""Sessions and CSRF tokens of the console.

The session is one cookie signed with :mod:`itsdangerous` (key from the console store),
holding a random nonce and, once logged in, the operator's name; it expires after
``max_age`` seconds. A visitor gets a session before logging in, so the login form has a
CSRF token too, and logging in issues a new nonce (no session fixation).

The CSRF token of a session is ``HMAC(key, nonce)``: every form carries it in a hidden
``csrf_token`` field and every POST is refused with 403 unless it matches.

:class:`LoginThrottle` stops password guessing: five failures for a name or from an address
within five minutes refuse further attempts (429) until the window has passed.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer

COOKIE = "muma_console"


@dataclass
class Session:
    nonce: str
    operator: str | None = None
    new: bool = False


class Sessions:
    """Signs, reads and issues console sessions.

    Args:
        secret: The signing key.
        max_age: Session lifetime in seconds.
    """

    def __init__(self, secret: str, max_age: int = 12 * 3600) -> None:
        self._secret = secret.encode()
        self._serializer = URLSafeTimedSerializer(secret, salt="muma-console-session")
        self.max_age = max_age

    def read(self, cookie: str | None) -> Session:
        """The cookie's session, or a new anonymous one when missing, forged or expired."""
        if cookie:
            try:
                data = self._serializer.loads(cookie, max_age=self.max_age)
                if isinstance(data, dict) and isinstance(data.get("n"), str):
                    return Session(data["n"], data.get("u"))
            except BadSignature:
                pass
        return self.fresh()

    @staticmethod
    def fresh(operator: str | None = None) -> Session:
        return Session(secrets.token_urlsafe(24), operator, new=True)

    def cookie(self, session: Session) -> str:
        return self._serializer.dumps({"n": session.nonce, "u": session.operator})

    def csrf_token(self, session: Session) -> str:
        return hmac.new(self._secret, f"csrf:{session.nonce}".encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, session: Session, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(self.csrf_token(session), str(given))


class LoginThrottle:
    """Refuses logins for a name (or from an address) after repeated failures.

    After ``limit`` failures within ``window`` seconds for the same key, further attempts are
    refused without checking the password until the oldest failure leaves the window; a
    success clears the name's failures. In memory, per process.

    Args:
        limit: Failures allowed in the window.
        window: Seconds a failure counts.
    """

    def __init__(self, limit: int = 5, window: float = 300.0) -> None:
        self.limit = limit
        self.window = window
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> list[float]:
        kept = [t for t in self._failures.get(key, []) if now - t < self.window]
        if kept:
            self._failures[key] = kept
        else:
            self._failures.pop(key, None)
        return kept

    def wait_seconds(self, keys: list[str]) -> float:
        """0 when an attempt may go ahead, else seconds until it may."""
        now = time.monotonic()
        with self._lock:
            waits = [
                self.window - (now - recent[-self.limit])
                for key in keys
                if len(recent := self._recent(key, now)) >= self.limit
            ]
        return max(waits, default=0.0)

    def failed(self, keys: list[str]) -> None:
        now = time.monotonic()
        with self._lock:
            for key in keys:
                self._failures.setdefault(key, []).append(now)

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)
