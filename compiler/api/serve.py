"""`python -m ftc serve [--host H] [--port P] [OVERRIDE ...]`: the job API and dashboard, as the user who starts it.

The overrides are the operator's defaults for every job (`cluster=mysite`, `output_root=...`);
they are checked once, here, by composing a job with them. Binds 127.0.0.1 unless told
otherwise: reach it from a laptop over an SSH tunnel.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys

from ftc.compiler.errors import UserError
from ftc.compiler.runs.terminal import printable

KEEP_ALIVE_S = 5  # an idle connection is closed after this
HEADER_BYTES = 16 * 1024  # request line and headers
CONNECTIONS = 128  # open at once; more are answered 503


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise UserError(f"ftc serve: {message}")


def parse(args: list[str]) -> argparse.Namespace:
    parser = _Parser(prog="ftc serve", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--datasets", help="dataset roots, colon-separated (default $FTC_API_DATASETS)")
    parser.add_argument("--token-file", help="where the generated token goes (default ~/.config/ftc/api-token)")
    parser.add_argument("--rate", type=float, default=50.0, help="requests per second per client (0: no limit)")
    parser.add_argument("--creates-per-min", type=float, default=30.0, help="jobs created per minute per client")
    parser.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    parser.add_argument("overrides", nargs="*", help="the operator's overrides for every job, e.g. cluster=mysite")
    options = parser.parse_args(args)
    if not 0 < options.port < 65536:
        raise UserError(f"ftc serve: --port must be 1-65535 (got {options.port})")
    return options


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def build(options: argparse.Namespace):
    """The ASGI app and the token, ready to serve: the operator's overrides are checked here."""
    from ftc.compiler.api.app import create_app
    from ftc.compiler.api.auth import load_token
    from ftc.compiler.api.datasets import DatasetRoots
    from ftc.compiler.api.limits import Limits
    from ftc.compiler.api.service import JobService, output_root_of

    if any(o.startswith("-") for o in options.overrides):
        raise UserError(f"ftc serve: unknown option {next(o for o in options.overrides if o.startswith('-'))}")
    root = output_root_of(options.overrides)
    service = JobService(options.overrides, DatasetRoots.from_option(options.datasets), root)
    for note in service.notes:  # registered targets left out
        print(f"ftc serve: warning: {printable(note, 400)}", file=sys.stderr)
    token, token_file = load_token(options.token_file)
    limits = Limits(requests_per_s=options.rate, burst=max(10.0, options.rate * 2),
                    creates_per_min=options.creates_per_min)
    return create_app(service, token, limits), token, token_file, root


def serve_command(args: list[str]) -> int:
    options = parse(args)
    app, _, token_file, root = build(options)
    import uvicorn

    base = f"http://{options.host}:{options.port}"
    print(f"ftc serve: NeMo Customizer API at {base}/v1/customization, dashboard at {base}/")
    print(f"runs under {root}; jobs get: {' '.join(options.overrides) or '(ftc defaults)'}")
    if token_file is not None:
        print(f"token: in {token_file} (readable by you only); it is never printed or logged")
    else:
        print("token: from $FTC_API_TOKEN")
    print(f"dashboard sign-in: {base}/login   clients: Authorization: Bearer <token>")
    if not _loopback(options.host):
        print(f"ftc serve: warning: listening on {options.host}, not loopback; anyone who can reach it and "
              "has the token submits as you", file=sys.stderr)
    sys.stdout.flush()
    from ftc.compiler.api.protocol import DeadlineH11

    uvicorn.run(app, host=options.host, port=options.port, log_level=options.log_level, http=DeadlineH11,
                access_log=options.log_level in ("info", "debug"), server_header=False, timeout_keep_alive=KEEP_ALIVE_S,
                h11_max_incomplete_event_size=HEADER_BYTES, limit_concurrency=CONNECTIONS,
                timeout_graceful_shutdown=5)
    return 0
