"""Who may change things through the dashboard: bind address, token, CSRF.

* The dashboard binds 127.0.0.1 by default; any other address needs a token
  (:func:`check_bind` refuses at start-up otherwise, saying how to fix it).
* Every mutating action is a POST that carries the token (in the ``st_token`` cookie set by the
  login form) **and** a CSRF field derived from that token with a per-process secret, so another
  site cannot forge the POST even from the operator's own browser.
* Without ``--token`` a random one is made at start and printed: mutations still need it.

Pure functions; :class:`Guard` holds the secrets.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

from streamtasks.errors import ConfigError

__all__ = ["COOKIE", "LOCAL_HOSTS", "TOKEN_ENV", "Guard", "check_bind"]

TOKEN_ENV = "STREAMTASKS_DASHBOARD_TOKEN"
COOKIE = "st_token"
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve a non-loopback address without a token."""
    if host not in LOCAL_HOSTS and not token:
        raise ConfigError(
            f"refusing to serve the dashboard on {host!r} without a token: anyone who can reach "
            f"it could redrive dead letters. Give --token T (or set {TOKEN_ENV}), or bind "
            "--host 127.0.0.1"
        )


@dataclass(frozen=True)
class Guard:
    """The token and the CSRF secret of one dashboard process."""

    token: str
    read_only: bool = False
    generated: bool = False
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)

    @classmethod
    def make(cls, token: str | None, *, read_only: bool = False) -> Guard:
        if token:
            return cls(token, read_only)
        return cls(secrets.token_urlsafe(16), read_only, generated=True)

    def token_ok(self, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(
            presented.encode(), self.token.encode()
        )

    def csrf_for(self, presented: str | None) -> str:
        """The CSRF value the forms of a session holding ``presented`` must send back."""
        if not self.token_ok(presented):
            return ""
        return hmac.new(self.secret, b"csrf:" + self.token.encode(), hashlib.sha256).hexdigest()

    def allows(self, cookie_token: str | None, csrf: str | None) -> str | None:
        """Why a mutating POST is refused (None: allowed)."""
        if self.read_only:
            return "the dashboard runs --read-only"
        if not self.token_ok(cookie_token):
            return "log in with the dashboard token first"
        expected = self.csrf_for(cookie_token)
        if not csrf or not hmac.compare_digest(csrf.encode(), expected.encode()):
            return "missing or wrong CSRF field: reload the page and try again"
        return None
