"""One measured case: which transport, loop, kind of call and load; passed to the workers."""

from __future__ import annotations

import json
from typing import Any

import attrs

__all__ = ["Case"]

KINDS = ("unary", "stream")


@attrs.frozen
class Case:
    mode: str
    backend: str  # asyncio | trio
    kind: str = "unary"  # unary | stream
    uvloop: bool = False
    payload: int = 1024  # bytes echoed each way (unary) or request size (stream)
    concurrency: int = 64
    duration: float | None = 2.0
    requests: int | None = None
    warmup: float = 0.5
    chunks: int = 100  # per stream
    chunk_size: int = 1024
    endpoint: str = "echo"  # "fail" exists to prove that errors are counted
    handler: str = "async"  # async | sync: which kind of echo handler answers (unary)
    direct: bool = False  # bypass the RequestPlane manager: transport client and serve()
    stall_timeout: float = 15.0
    profile: str | None = None  # directory for cProfile output of both workers
    # A fleet: this many server processes, each its own instance in a discovery directory
    # of the run's own, and a client that calls them through a router; 0: one server,
    # called at its address.
    workers: int = 0
    route: str = "p2c"  # the router's mode across a fleet

    @property
    def loop(self) -> str:
        """The event loop as shown to users: ``asyncio``, ``asyncio+uvloop`` or ``trio``."""
        return f"{self.backend}+uvloop" if self.uvloop else self.backend

    @property
    def endpoint_name(self) -> str:
        """The endpoint the client calls."""
        if self.kind == "stream":
            return "stream"
        if self.endpoint == "echo" and self.handler == "sync":
            return "echo_sync"
        return self.endpoint

    @property
    def server_key(self) -> tuple[str, str, bool, bool, int]:
        """Cases with the same key share one server process (or fleet)."""
        return (self.mode, self.backend, self.uvloop, self.direct, self.workers)

    @property
    def label(self) -> str:
        via = " direct" if self.direct else ""
        sync = " sync" if self.handler == "sync" else ""
        fleet = f" {self.workers} workers {self.route}" if self.workers else ""
        return f"{self.mode}/{self.loop}{via}{fleet} {self.kind}{sync} c={self.concurrency}"

    def to_json(self) -> str:
        return json.dumps(attrs.asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Case:
        data: dict[str, Any] = json.loads(text)
        return cls(**data)
