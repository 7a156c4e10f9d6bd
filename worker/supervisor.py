"""Start, watch and restart the ComfyUI process the worker talks to."""

from __future__ import annotations

import io
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import requests

from .comfy_log import LogPump
from .config import child_env
from .errors import ComfyUnavailable

log = logging.getLogger(__name__)

PACK_DIR = Path(__file__).resolve().parent.parent / "custom_nodes" / "wan_serverless"


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the worker dies, so ComfyUI is never orphaned (Linux)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class ComfySettings:
    """How to launch ComfyUI: where it lives, its base directory and its model paths."""

    comfyui_dir: Path
    base_dir: Path
    extra_model_paths: list[Path] = field(default_factory=list)
    host: str = "127.0.0.1"
    port: int = 0
    cpu: bool = False
    extra_args: list[str] = field(default_factory=list)
    python: str = sys.executable
    link_pack: bool = True
    env: dict[str, str] = field(default_factory=dict)
    log_rate: float = 20.0  # output lines per second forwarded to stdout; all go to the log file


def prepare_base_dir(settings: ComfySettings) -> None:
    """Create ComfyUI's base directory layout and link our pack into its custom_nodes."""
    for sub in ("custom_nodes", "input", "output", "temp", "user", "models"):
        (settings.base_dir / sub).mkdir(parents=True, exist_ok=True)
    if settings.link_pack:
        link = settings.base_dir / "custom_nodes" / PACK_DIR.name
        if not link.exists():
            link.symlink_to(PACK_DIR, target_is_directory=True)


class ComfyProcess:
    """One ComfyUI server process: ``start()``, ``wait_ready()``, ``alive()``, ``stop()``, ``restart()``."""

    def __init__(self, settings: ComfySettings) -> None:
        self.settings = settings
        self.port = settings.port or free_port(settings.host)
        self.proc: subprocess.Popen[bytes] | None = None
        self.pump: LogPump | None = None
        self.log_path = settings.base_dir / "comfyui.log"
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://{self.settings.host}:{self.port}"

    def command(self) -> list[str]:
        s = self.settings
        cmd = [s.python, str(s.comfyui_dir / "main.py"), "--listen", s.host, "--port", str(self.port),
               "--base-directory", str(s.base_dir), "--disable-auto-launch", "--disable-api-nodes",
               # ComfyUI 0.8.0 keeps its database next to its code (<comfyui>/user/comfyui.db) whatever the
               # base directory; that folder does not exist there: "Failed to initialize database".
               "--database-url", f"sqlite:///{(s.base_dir / 'user' / 'comfyui.db').resolve()}"]
        if s.cpu:
            cmd.append("--cpu")
        for path in s.extra_model_paths:
            cmd += ["--extra-model-paths-config", str(path)]
        return cmd + list(s.extra_args)

    def start(self) -> None:
        if self.alive():
            return
        prepare_base_dir(self.settings)
        log.info("starting ComfyUI on %s", self.url)
        env = child_env(PYTHONUNBUFFERED="1", **self.settings.env)
        self.proc = subprocess.Popen(self.command(), cwd=self.settings.comfyui_dir, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True,
                                     preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        stdout = cast(io.BufferedReader, self.proc.stdout)  # stdout=PIPE, buffered: a BufferedReader
        self.pump = LogPump(stdout, open(self.log_path, "ab"), self.settings.log_rate).start()
        self.starts += 1

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(deque(f, maxlen=lines))
        except OSError:
            return ""

    def wait_ready(self, timeout: float = 180.0) -> None:
        """Block until ``/system_stats`` answers; raise ComfyUnavailable on death or timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                code = self.proc.returncode if self.proc else None
                raise ComfyUnavailable(f"ComfyUI exited during start-up (exit code {code}); last log lines:\n{self.log_tail()}")
            try:
                if requests.get(f"{self.url}/system_stats", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.25)
        self.stop()
        raise ComfyUnavailable(f"ComfyUI did not answer within {timeout:.0f}s; last log lines:\n{self.log_tail()}")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group, SIGKILL after ``timeout``."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if self.pump is not None:
            self.pump.join(5)  # the last lines reach the file and stdout

    def kill(self) -> None:
        """SIGKILL now (tests use this to simulate a crash)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
