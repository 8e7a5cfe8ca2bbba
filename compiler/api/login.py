"""The dashboard's sign-in: the token is posted once from a form, never put in an address.

A token in a URL lands in access logs, browser history and Referer headers, so `?token=` is
refused. `/login` shows a form; its POST sets an HttpOnly, SameSite=Strict cookie that holds a
value derived from the token (not the token), then redirects to a path on this server only.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from urllib.parse import parse_qs

LOGIN_PATH = "/login"
FORM_LIMIT = 4096  # bytes of a login form
LOCAL_PATH = re.compile(r"^/(?![/\\])[A-Za-z0-9/_.-]{0,512}$")  # never //host or /\host: same origin only


def session_value(token: str) -> str:
    """What the cookie holds: a MAC of the token, so a leaked cookie is not a bearer token for the API."""
    return hmac.new(token.encode(), b"ftc dashboard session", hashlib.sha256).hexdigest()


def local_path(target: str | None) -> str:
    """`target` when it is a path on this server, else `/`."""
    return target if target and LOCAL_PATH.match(target) and ".." not in target else "/"


def parse_form(body: bytes) -> tuple[str | None, str]:
    """(token, next path) from an application/x-www-form-urlencoded body."""
    fields = parse_qs(body.decode("utf-8", errors="replace"), max_num_fields=4)
    token = (fields.get("token") or [None])[0]
    return (token.strip() if token else None), local_path((fields.get("next") or [None])[0])


def page(next_path: str, failed: bool) -> bytes:
    from ftc.compiler.api.dashboard import environment

    return environment().get_template("dashboard_login.html.j2").render(next=local_path(next_path), failed=failed).encode()
