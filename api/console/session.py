"""Console sessions: a coordinator token in an HttpOnly, SameSite=Strict cookie, and CSRF checks.

The cookie holds the coordinator's own token, so revoking the token (`pathways token revoke`)
ends every console session at once; nothing else about the session is stored. Every form carries
a CSRF token: once signed in, an HMAC of the session under the installation's secret key (a
synchroniser token that needs no server-side state); on the sign-in form, a double-submit nonce.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import quote

from fastapi import Request
from starlette.responses import Response

from api.tokens import Principal, PrincipalKind, TokenStore
from pathways.settings import Settings

SESSION_COOKIE = "pathways_console"
SIGNIN_COOKIE = "pathways_signin"
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"


class SignInRequired(Exception):
    """A console page was asked for without a live coordinator session."""

    def __init__(self, next_url: str) -> None:
        super().__init__("sign in required")
        self.next_url = next_url


class CsrfRefused(Exception):
    """A form arrived without the CSRF token of this session."""


def principal_of(request: Request) -> Principal | None:
    """The coordinator behind the session cookie, or None (no cookie, unknown or revoked)."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    tokens: TokenStore = request.app.state.tokens
    principal = tokens.authenticate(token)
    if principal is None or principal.kind is not PrincipalKind.COORDINATOR:
        return None
    return principal


def require(request: Request) -> Principal:
    """The signed-in coordinator; pages without one redirect to sign-in (and come back)."""
    principal = principal_of(request)
    if principal is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInRequired(target)
    return principal


def csrf_token(request: Request) -> str:
    """The CSRF token forms of this session must carry (empty when not signed in)."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return ""
    key: bytes = request.app.state.settings.key
    session = hashlib.sha256(token.encode()).hexdigest()
    return hmac.new(key, f"console-csrf:{session}".encode(), hashlib.sha256).hexdigest()


def check_csrf(request: Request, sent: str | None) -> None:
    """Refuse a state-changing request whose CSRF token (form field or header) is not ours."""
    expected = csrf_token(request)
    sent = sent or request.headers.get(CSRF_HEADER) or ""
    if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise CsrfRefused()


def signin_nonce(request: Request) -> str:
    """The double-submit nonce of the sign-in form: the cookie's, or a new one."""
    return request.cookies.get(SIGNIN_COOKIE) or secrets.token_urlsafe(24)


def check_signin_nonce(request: Request, sent: str | None) -> None:
    cookie = request.cookies.get(SIGNIN_COOKIE) or ""
    if not cookie or not sent or not hmac.compare_digest(cookie.encode(), sent.encode()):
        raise CsrfRefused()


def is_https(request: Request, settings: Settings) -> bool:
    """Served over https (directly, behind a proxy that says so, or by configuration)."""
    forwarded = request.headers.get("x-forwarded-proto", "")
    public = settings.public_url or ""
    return request.url.scheme == "https" or forwarded == "https" or public.startswith("https://")


def set_cookie(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
    """HttpOnly, SameSite=Strict, Secure over https: not readable by scripts, not sent by
    other sites' requests."""
    settings: Settings = request.app.state.settings
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="strict",
        secure=is_https(request, settings),
    )


def clear_cookie(response: Response, request: Request, name: str) -> None:
    settings: Settings = request.app.state.settings
    response.delete_cookie(
        name, path="/", httponly=True, samesite="strict", secure=is_https(request, settings)
    )


def safe_next(target: str | None) -> str:
    """Only same-site paths after sign-in (never an open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return quote(target, safe="/?&=%-_.~:+,")
