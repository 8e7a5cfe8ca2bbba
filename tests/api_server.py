"""The real `python -m ftc serve` in a subprocess on a free loopback port, driven over HTTP with httpx."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

TOKEN = "test-token-0123456789abcdef"
FINAL = ("completed", "failed", "cancelled")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    root: Path
    proc: subprocess.Popen
    base: str
    log: Path
    token: str = TOKEN
    client: httpx.Client = field(init=False)

    def __post_init__(self):
        self.client = httpx.Client(base_url=self.base, headers={"Authorization": f"Bearer {self.token}"}, timeout=120)

    def post(self, path: str, **kw) -> httpx.Response:
        return self.client.post(path, **kw)

    def get(self, path: str, **kw) -> httpx.Response:
        return self.client.get(path, **kw)

    def wait_for(self, job_id: str, states=FINAL, timeout: float = 600) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            status = self.get(f"/v1/customization/jobs/{job_id}/status").json()
            if status["status"] in states:
                return status
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} still {status['status']} after {timeout} s\n{self.log.read_text()[-3000:]}")
            time.sleep(0.5)

    def files(self) -> list[str]:
        """Every path under the output root (the run folders and their files)."""
        return sorted(str(p.relative_to(self.root)) for p in self.root.rglob("*")) if self.root.exists() else []

    def stop(self) -> None:
        self.client.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start(tmp: Path, *args: str, env: dict | None = None, token: str | None = TOKEN) -> Server:
    """Start `ftc serve ARGS` with its own output root; returns once /health answers."""
    tmp.mkdir(parents=True, exist_ok=True)
    root, log = tmp / "runs", tmp / "serve.log"
    port = free_port()
    full_env = {**os.environ, "FTC_OUTPUT_ROOT": str(root), **(env or {})}
    if token is not None:
        full_env["FTC_API_TOKEN"] = token
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "ftc", "serve", "--port", str(port), *args], env=full_env,
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"ftc serve exited {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"ftc serve did not answer:\n{log.read_text()}")
        time.sleep(0.2)
    return Server(root, proc, base, log, token or "")


def lora_body(**hyper) -> dict:
    """The README's curl body, pointed at the tiny model and the bundled demo dataset."""
    return {
        "config": "ftc/tiny-llama@v1.0.0+CPU",
        "dataset": {"name": "demo"},
        "hyperparameters": {
            "training_type": "sft", "finetuning_type": "lora", "epochs": 10, "batch_size": 16,
            "learning_rate": 0.005, "lora": {"adapter_dim": 8, "adapter_dropout": 0.1}, **hyper,
        },
    }
