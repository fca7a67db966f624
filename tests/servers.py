"""What the test servers started as processes share: a free loopback port, and waiting until one answers."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import httpx

# Ports come from below Linux's ephemeral range (32768-60999), one slice per pytest-xdist worker. A port the
# OS hands out for bind(0) is also what it hands out as the local port of outgoing connections, so between
# picking it and a server binding it another process could take it; and two workers picking by bind(0) can
# be handed the same port one after the other. A per-worker slice outside that range rules out both.
_PORTS_FROM, _PORTS_TO = 20000, 32000
_next_port: dict[str, int] = {}


def _worker_slice() -> tuple[int, int]:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    count = max(int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")), 1)
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    size = (_PORTS_TO - _PORTS_FROM) // count
    return _PORTS_FROM + index * size, _PORTS_FROM + (index + 1) * size


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now, from this process's own slice (see above)."""
    low, high = _worker_slice()
    start = _next_port.get(host, low + (os.getpid() * 7919) % (high - low))
    for step in range(high - low):
        port = low + (start - low + step) % (high - low)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        _next_port[host] = port + 1 if port + 1 < high else low
        return port
    raise RuntimeError(f"no free port on {host} in {low}-{high}")


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
