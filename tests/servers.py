"""What the test servers started as processes share: a free loopback port, and waiting until one answers."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import httpx


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_until_answers(
    proc: subprocess.Popen[bytes], health_url: str, log_file: Path, timeout: float, what: str
) -> None:
    """Poll ``health_url`` until it answers 200; fail with ``what``'s log if the process exits or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(
                f"{what} exited with code {proc.returncode} before answering on {health_url}; its log:\n"
                + log_file.read_text(errors="replace")
            )
        try:
            if httpx.get(health_url, timeout=1.0, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{what} did not answer on {health_url} within {timeout:.0f}s; its log:\n"
                + log_file.read_text(errors="replace")
            )
        time.sleep(0.05)
