"""One ``streamlit run app.py`` server, as a teacher starts it: headless, usage stats off, no file
watcher, on a free port. The load benchmark and the browser tests both drive the app through it.

    with app_server({"SIDE_MODEL": "default"}, log_path=log, start_timeout_s=90) as server:
        ...  # open server.url

The server's output goes to ``log_path``; on leaving the block it gets SIGTERM (then SIGKILL if it
has not exited within STOP_TIMEOUT_S) and the log is closed, so the caller can read it afterwards.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
STOP_TIMEOUT_S = 15  # a clean shutdown after SIGTERM, before SIGKILL
POLL_S = 0.2  # how often the health check is asked while the server starts


class ServerDidNotStart(RuntimeError):
    """The server exited, or did not answer its health check in time."""


@dataclass(frozen=True)
class AppServer:
    url: str  # where this machine reaches it (loopback when it listens on every interface)
    port: int
    pid: int


def free_port(address: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on at ``address`` now (the OS picks it)."""
    with socket.socket() as s:
        s.bind((address, 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, process: subprocess.Popen, timeout_s: float, log_path: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerDidNotStart(
                f"streamlit exited with code {process.returncode} before answering; its output: {log_path}"
            )
        with (
            contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError),
            urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response,
        ):
            if response.read().strip() == b"ok":
                return
        time.sleep(POLL_S)
    raise ServerDidNotStart(
        f"streamlit did not answer {url}/_stcore/health within {timeout_s} s; its output: {log_path}"
    )


@contextlib.contextmanager
def app_server(
    settings: dict[str, str], *, log_path: Path, start_timeout_s: float, address: str = "127.0.0.1"
) -> Iterator[AppServer]:
    """Serve app.py on a free port of ``address`` until the block ends; yields once it is healthy.

    ``settings`` are the app's SIDE_* variables; every other SIDE_ variable of this process's
    environment is left out, so the server sees exactly these. ``address="0.0.0.0"`` listens on every
    interface, as a plain ``streamlit run app.py`` does (the health check then goes through loopback).
    Raises ServerDidNotStart (after stopping it) if it exits or is not healthy within start_timeout_s.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIDE_")} | settings
    port = free_port(address)
    url = f"http://{'127.0.0.1' if address == '0.0.0.0' else address}:{port}"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                "app.py",
                "--server.headless=true",
                f"--server.port={port}",
                f"--server.address={address}",
                "--server.fileWatcherType=none",
                "--browser.gatherUsageStats=false",
            ],
            cwd=PROJECT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_healthy(url, process, start_timeout_s, log_path)
            yield AppServer(url=url, port=port, pid=process.pid)
        finally:
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_TIMEOUT_S)
