"""The ASGI layer in front of the app: bearer token, rate limits and body size, before any route runs.

Pure ASGI (no per-request task), so the checks add microseconds to a status poll. A body is
refused by its Content-Length when it declares one, and by counting when it is streamed.
"""

from __future__ import annotations

import json
import re
from http.cookies import SimpleCookie
from urllib.parse import parse_qs

from ftc.compiler.api import auth
from ftc.compiler.api.limits import Limits, RateLimiter

OPEN_PATHS = ("/health",)
SAFE_PATH = re.compile(r"^/[A-Za-z0-9/_.-]*$")


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
        self.requests = RateLimiter(limits.requests_per_s, limits.burst)
        self.creates = RateLimiter(limits.creates_per_min / 60.0, max(1.0, limits.creates_per_min / 6))
        self.fastapi = app

    def _token(self, scope) -> tuple[str | None, str | None]:
        """(token from the header, token from the cookie)."""
        header = cookie = None
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                header = auth.bearer(value.decode("latin-1"))
            elif name == b"cookie":
                morsel = SimpleCookie(value.decode("latin-1")).get(auth.COOKIE)
                cookie = morsel.value if morsel else None
        return header, cookie

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        client = (scope.get("client") or ("?", 0))[0]
        path, method = scope["path"], scope["method"]
        wait = self.requests.wait_for(client)
        if wait:
            return await _send_json(send, 429, {"detail": f"too many requests; retry in {wait:.1f} s"},
                                    [(b"retry-after", str(max(1, round(wait))).encode())])
        if path not in OPEN_PATHS:
            header, cookie = self._token(scope)
            login = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [None])[0]
            if method == "GET" and login is not None and auth.same(login, self.token):
                return await self._login(send, path)
            allowed = auth.same(header, self.token) or (method in ("GET", "HEAD") and auth.same(cookie, self.token))
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
            await self.app(scope, counted, tracked)
        except BodyTooLarge:
            if not started:
                await _send_json(send, 413, {"detail": f"body larger than {self.limits.max_body} bytes"})

    async def _login(self, send, path: str) -> None:
        """Trade `?token=` for the dashboard's cookie and drop the token from the address bar."""
        cookie = f"{auth.COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/"
        await send({"type": "http.response.start", "status": 303, "headers": [
            (b"location", (path if SAFE_PATH.match(path) else "/").encode()), (b"set-cookie", cookie.encode()), (b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})
