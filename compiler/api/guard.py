"""The ASGI layer in front of the app: bearer token, rate limits, body size and a time limit, before
any route runs; the sign-in form (compiler/api/login.py) and an access log without query strings.

Pure ASGI (no per-request task), so the checks add microseconds to a status poll. A body is
refused by its Content-Length when it declares one, and by counting when it is streamed.
"""

from __future__ import annotations

import asyncio
import json
import logging
from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qs, quote

from ftc.compiler.api import auth, login
from ftc.compiler.api.limits import Limits, RateLimiter

OPEN_PATHS = ("/health",)
SECURITY_HEADERS = [  # pages run no script, are never framed, and send no Referer
    (b"content-security-policy", b"default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
                                 b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"), (b"x-frame-options", b"DENY"),
]
ACCESS = logging.getLogger("uvicorn.access")  # uvicorn's own access log is off: it writes query strings


class BodyTooLarge(Exception):
    pass


async def _send_json(send, status: int, body: dict, headers: list[tuple[bytes, bytes]] = ()) -> None:
    payload = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()), *headers]})
    await send({"type": "http.response.body", "body": payload})


class Guard:
    def __init__(self, app, token: str, limits: Limits):
        self.app, self.token, self.limits = app, token, limits
        self.session = login.session_value(token)
        self.requests = RateLimiter(limits.requests_per_s, limits.burst)
        self.creates = RateLimiter(limits.creates_per_min / 60.0, max(1.0, limits.creates_per_min / 6))
        self.fastapi = app

    def _credentials(self, scope) -> tuple[str | None, str | None, bool]:
        """(token from the header, session from the cookie, whether the client reads HTML)."""
        header = cookie = None
        html = False
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                header = auth.bearer(value.decode("latin-1"))
            elif name == b"cookie":
                try:
                    morsel = SimpleCookie(value.decode("latin-1")).get(auth.COOKIE)
                except CookieError:
                    morsel = None
                cookie = morsel.value if morsel else None
            elif name == b"accept":
                html = b"text/html" in value
        return header, cookie, html

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        answered = {"status": 0}

        async def logged(message):
            if message["type"] == "http.response.start":
                answered["status"] = message["status"]
                message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
            await send(message)

        try:
            await self._guarded(scope, receive, logged)
        finally:
            _access_line(scope, answered["status"])

    async def _guarded(self, scope, receive, send):
        client = (scope.get("client") or ("?", 0))[0]
        path, method = scope["path"], scope["method"]
        wait = self.requests.wait_for(client)
        if wait:
            return await _send_json(send, 429, {"detail": f"too many requests; retry in {wait:.1f} s"},
                                    [(b"retry-after", str(max(1, round(wait))).encode())])
        if "token" in parse_qs(scope.get("query_string", b"").decode("latin-1")):
            return await _send_json(send, 400, {"detail": "a token in the address is refused (addresses are logged "
                                                          f"and kept in history): sign in at {login.LOGIN_PATH} or "
                                                          "send Authorization: Bearer <token>"})
        if path == login.LOGIN_PATH:
            return await self._login(scope, receive, send)
        if path not in OPEN_PATHS:
            header, cookie, html = self._credentials(scope)
            allowed = auth.same(header, self.token) or (method in ("GET", "HEAD") and auth.same(cookie, self.session))
            if not allowed and method in ("GET", "HEAD") and html and header is None:
                return await _redirect(send, f"{login.LOGIN_PATH}?next={quote(login.local_path(path), safe='/')}")
            if not allowed:
                return await _send_json(send, 401, {"detail": "not authenticated: send Authorization: Bearer <token>"},
                                        [(b"www-authenticate", b"Bearer")])
        if method == "POST" and path == "/v1/customization/jobs":
            wait = self.creates.wait_for(client)
            if wait:
                return await _send_json(send, 429, {"detail": f"too many jobs created; retry in {wait:.1f} s"},
                                        [(b"retry-after", str(max(1, round(wait))).encode())])
        for name, value in scope.get("headers", []):
            if name == b"content-length" and (not value.isdigit() or int(value) > self.limits.max_body):
                return await _send_json(send, 413, {"detail": f"body larger than {self.limits.max_body} bytes"})
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limits.max_body:
                    raise BodyTooLarge
            return message

        started = False

        async def tracked(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await asyncio.wait_for(self.app(scope, counted, tracked), self.limits.request_s)
        except BodyTooLarge:
            if not started:
                await _send_json(send, 413, {"detail": f"body larger than {self.limits.max_body} bytes"})
        except TimeoutError:
            if not started:
                await _send_json(send, 503, {"detail": f"the request took longer than {self.limits.request_s:g} s"})

    async def _login(self, scope, receive, send) -> None:
        """GET: the sign-in form. POST: the token, once, traded for the session cookie."""
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if scope["method"] != "POST":
            return await _html(send, 200, login.page((query.get("next") or ["/"])[0], failed=False))
        body = b""
        while True:
            message = await asyncio.wait_for(receive(), self.limits.request_s)
            body += message.get("body", b"")
            if len(body) > login.FORM_LIMIT:
                return await _send_json(send, 413, {"detail": f"body larger than {login.FORM_LIMIT} bytes"})
            if not message.get("more_body"):
                break
        given, target = login.parse_form(body)
        if not auth.same(given, self.token):
            return await _html(send, 401, login.page(target, failed=True))
        cookie = f"{auth.COOKIE}={self.session}; HttpOnly; SameSite=Strict; Path=/"
        await _redirect(send, target, [(b"set-cookie", cookie.encode())])


async def _redirect(send, location: str, headers: list[tuple[bytes, bytes]] = ()) -> None:
    await send({"type": "http.response.start", "status": 303, "headers": [
        (b"location", location.encode()), (b"content-length", b"0"), (b"cache-control", b"no-store"), *headers]})
    await send({"type": "http.response.body", "body": b""})


async def _html(send, status: int, page: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"text/html; charset=utf-8"), (b"content-length", str(len(page)).encode()),
        (b"cache-control", b"no-store")]})
    await send({"type": "http.response.body", "body": page})


def _access_line(scope, status: int) -> None:
    """The access log, without the query string: nothing a client puts in an address is logged."""
    client = scope.get("client") or ("?", 0)
    ACCESS.info('%s - "%s %s HTTP/%s" %d', f"{client[0]}:{client[1]}", scope["method"],
                quote(scope["path"], safe="/"), scope.get("http_version", "1.1"), status)
