"""Sessions and CSRF tokens of the console.

The session is one cookie signed with :mod:`itsdangerous` (key from the console store),
holding a random nonce and, once logged in, the operator's name; it expires after
``max_age`` seconds. A visitor gets a session before logging in, so the login form has a
CSRF token too, and logging in issues a new nonce (no session fixation).

The CSRF token of a session is ``HMAC(key, nonce)``: every form carries it in a hidden
``csrf_token`` field and every POST is refused with 403 unless it matches.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
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
