"""Tokens that stay secret, and a server no client can hold: the real `ftc serve` over loopback.

No token in an address (refused), in the access log or in ftc serve's output; the dashboard's
sign-in posts it once for a cookie that is not the token; redirects stay on this server; idle,
silent and slow connections are closed; each request has a time limit.
"""

from __future__ import annotations

import socket
import time

import httpx
import pytest
from api_server import TOKEN, start

from ftc.compiler.api import auth


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tokens")
    srv = start(tmp, "--rate", "0", "cluster=example", token=None, env={"FTC_API_TOKEN_FILE": str(tmp / "cfg" / "tok")})
    srv.token = (tmp / "cfg" / "tok").read_text().strip()
    yield srv
    srv.stop()


def test_serve_prints_where_the_token_is_never_the_token(server):
    said = server.log.read_text()
    assert "cfg/tok" in said and server.token not in said


@pytest.mark.parametrize("path", ["/", "/?token={t}", "/runs/abc?token={t}", "/v1/customization/jobs?token={t}",
                                  "/health?token={t}", "//evil.example/x?token={t}", "/login?token={t}"])
def test_a_token_in_the_address_is_refused_and_never_logged(server, path):
    url = server.base + path.format(t=server.token)
    r = httpx.get(url, follow_redirects=False)
    if "token" in path:
        assert r.status_code == 400 and "set-cookie" not in r.headers
    assert server.token not in r.text and server.token not in r.headers.get("location", "")
    time.sleep(0.05)
    said = server.log.read_text()
    assert server.token not in said
    assert f'"GET {path.split("?")[0]} HTTP/1.1" {r.status_code}' in said  # logged, without the query


def test_sign_in_posts_the_token_once_for_a_cookie_that_is_not_the_token(server):
    page = httpx.get(server.base + "/login?next=/runs/abc")
    assert page.status_code == 200 and 'method="post"' in page.text and 'value="/runs/abc"' in page.text
    wrong = httpx.post(server.base + "/login", data={"token": "x" * 40, "next": "/"}, follow_redirects=False)
    assert wrong.status_code == 401 and "set-cookie" not in wrong.headers
    ok = httpx.post(server.base + "/login", data={"token": server.token, "next": "/runs/abc"}, follow_redirects=False)
    assert ok.status_code == 303 and ok.headers["location"] == "/runs/abc"
    cookie = ok.cookies[auth.COOKIE]
    assert server.token not in ok.headers["set-cookie"] and "HttpOnly" in ok.headers["set-cookie"]
    assert "SameSite=Strict" in ok.headers["set-cookie"]
    assert httpx.get(server.base + "/", cookies={"ftc_token": cookie}).status_code == 200
    assert httpx.get(server.base + "/", cookies={"ftc_token": server.token}).status_code == 401  # the token is no cookie
    r = httpx.post(server.base + "/v1/customization/jobs", json={}, cookies={"ftc_token": cookie})
    assert r.status_code == 401  # changing requests need the header
    assert server.token not in server.log.read_text()


@pytest.mark.parametrize("target", ["//evil.example/x", "/\\evil.example", "https://evil.example/", "/../x",
                                    "javascript:alert(1)", "/ok\r\nSet-Cookie: x=1", ""])
def test_sign_in_redirects_to_this_server_only(server, target):
    r = httpx.post(server.base + "/login", data={"token": server.token, "next": target}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/"


def test_pages_run_no_script_are_never_framed_and_send_no_referer(server):
    for r in (httpx.get(server.base + "/login"), httpx.get(server.base + "/"), httpx.get(server.base + "/health")):
        assert "script-src" not in r.headers["content-security-policy"]
        assert "default-src 'none'" in r.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
        assert r.headers["referrer-policy"] == "no-referrer" and r.headers["x-content-type-options"] == "nosniff"


def test_a_browser_without_a_session_is_sent_to_sign_in(server):
    r = httpx.get(server.base + "/runs/abc", headers={"Accept": "text/html"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/runs/abc"
    assert httpx.get(server.base + "/runs/abc").status_code == 401  # an API client gets 401


def _connect(server) -> socket.socket:
    host, port = server.base.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=30)


def test_silent_and_slow_connections_are_closed(server, monkeypatch):
    from ftc.compiler.api import protocol

    silent = [_connect(server) for _ in range(20)]
    slow = _connect(server)
    slow.sendall(b"GET /health HTTP/1.1\r\n")
    started = time.monotonic()
    for index in range(30):  # a header byte every half second: never a whole request
        try:
            slow.sendall(b"X")
        except OSError:
            break
        time.sleep(0.5)
    assert time.monotonic() - started < protocol.HEADER_S + 4, "a slow sender was kept"
    for sock in silent:
        sock.settimeout(5)
        assert sock.recv(1) == b"", "a silent connection was kept open"
        sock.close()
    assert httpx.get(server.base + "/health").status_code == 200


def test_each_request_has_a_time_limit():
    import asyncio

    from fastapi.testclient import TestClient

    from ftc.compiler.api.guard import Guard
    from ftc.compiler.api.limits import Limits

    async def slow_app(scope, receive, send):
        await asyncio.sleep(5)

    client = TestClient(Guard(slow_app, TOKEN, Limits(request_s=0.2)), headers={"Authorization": f"Bearer {TOKEN}"})
    started = time.monotonic()
    r = client.get("/anything")
    assert r.status_code == 503 and "longer than 0.2 s" in r.json()["detail"]
    assert time.monotonic() - started < 2
