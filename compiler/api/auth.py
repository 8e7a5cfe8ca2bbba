"""The bearer token every request needs: $FTC_API_TOKEN, or one generated into an owner-only file.

The browser dashboard cannot send a header, so its sign-in form (compiler/api/login.py) posts the
token once for an HttpOnly, SameSite=Strict cookie that GET requests accept; changing requests
(POST) need the header, so a page on another site cannot create or cancel jobs through a
logged-in browser. The token never appears in an address, a log line or ftc serve's output.
"""

from __future__ import annotations

import hmac
import os
import secrets
import stat
from pathlib import Path

from ftc.compiler.checks import ownership
from ftc.compiler.errors import UserError

TOKEN_ENV = "FTC_API_TOKEN"
TOKEN_FILE_ENV = "FTC_API_TOKEN_FILE"
COOKIE = "ftc_token"
MIN_LENGTH = 16


def default_token_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "ftc" / "api-token"


def _read_owner_only(path: Path) -> str:
    """The token file's text: a regular file (never a link), yours, readable by you only, in folders
    no one else may write; refused in one line otherwise, as ssh refuses a loose authorized_keys."""
    ownership.check_parents(path, "token file")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        why = "a symbolic link" if path.is_symlink() else exc.strerror
        raise UserError(f"{path}: the token file is {why}; it must be a plain file readable by you only") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise UserError(f"{path}: the token file must belong to you and be readable by you only (chmod 600)")
        return os.read(fd, 4096).decode("utf-8", errors="replace")
    finally:
        os.close(fd)


def _checked(token: str, where: str) -> str:
    token = token.strip()
    if len(token) < MIN_LENGTH or not token.isprintable() or " " in token:
        raise UserError(f"{where}: the API token must be at least {MIN_LENGTH} printable characters without spaces")
    return token


def load_token(file: Path | None = None) -> tuple[str, Path | None]:
    """(token, the file it came from or went to); the env variable is removed so jobs do not inherit it."""
    env = os.environ.pop(TOKEN_ENV, None)
    if env is not None:
        return _checked(env, TOKEN_ENV), None
    path = Path(file or os.environ.get(TOKEN_FILE_ENV) or default_token_file())
    if os.path.lexists(path):
        return _checked(_read_owner_only(path), str(path)), path
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    ownership.check_parents(path, "token file")
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    return token, path


def bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def same(given: str | None, token: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), token.encode())
