"""The load loop: callers that keep N requests in flight, for a duration or a request count.

It measures any ``async () -> None`` call, so the transports and the peer stacks in
``benchmarks/`` are driven by the very same loop. Warm-up calls run first and are not
measured. A call that raises counts as an error; a run in which nothing completes for
``stall_timeout`` seconds cancels what is still in flight and counts it as lost, so a hung
transport ends the run with a verdict instead of hanging it.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from time import perf_counter_ns

import anyio
import attrs
from anyio.lowlevel import checkpoint

from .latency import LatencyRecorder

__all__ = ["LoadOutcome", "LoadPlan", "run_load"]

Call = Callable[[], Awaitable[None]]
Progress = Callable[[str, int], None]
Boundary = Callable[[str], None]

_TICK = 0.2
_MAX_SAMPLES = 3


@attrs.frozen
class LoadPlan:
    concurrency: int
    duration: float | None = None  # measured seconds; or
    requests: int | None = None  # measured requests
    warmup: float = 0.0
    stall_timeout: float = 15.0


@attrs.frozen
class LoadOutcome:
    completed: int  # measured calls that succeeded
    errors: int  # calls that raised, warm-up included
    lost: int  # calls cancelled because the run stalled
    seconds: float  # measured wall time
    latencies_ns: list[int]  # of the measured calls, sorted
    error_samples: tuple[str, ...] = ()


@attrs.define(eq=False)
class _State:
    inflight: int = 0
    done: int = 0
    errors: int = 0
    lost: int = 0
    tickets: float = math.inf
    samples: list[str] = attrs.Factory(list)

    def fail(self, exc: Exception) -> None:
        self.errors += 1
        if len(self.samples) < _MAX_SAMPLES:
            text = f"{type(exc).__name__}: {exc}"
            if text not in self.samples:
                self.samples.append(text)


async def _phase(
    call: Call,
    plan: LoadPlan,
    state: _State,
    *,
    name: str,
    stop_ns: float,
    recorder: LatencyRecorder | None,
    progress: Progress | None,
) -> None:
    async def worker() -> None:
        while True:
            t0 = perf_counter_ns()
            if t0 >= stop_ns or state.tickets <= 0:
                return
            state.tickets -= 1
            state.inflight += 1
            try:
                await call()
            except Exception as exc:
                state.inflight -= 1
                state.fail(exc)
                await checkpoint()  # a call failing without awaiting must not starve the rest
                continue
            t1 = perf_counter_ns()
            state.inflight -= 1
            state.done += 1
            if recorder is not None:
                recorder.add(t1 - t0)

    async def ticker(workers: anyio.CancelScope) -> None:
        last_done, last_change = -1, anyio.current_time()
        while True:
            await anyio.sleep(_TICK)
            if progress is not None:
                progress(name, state.done)
            now = anyio.current_time()
            if state.done != last_done or not state.inflight:
                last_done, last_change = state.done, now
            elif now - last_change >= plan.stall_timeout:
                state.lost += state.inflight
                workers.cancel()
                return

    workers = anyio.CancelScope()
    async with anyio.create_task_group() as outer:
        outer.start_soon(ticker, workers)
        with workers:
            async with anyio.create_task_group() as tg:
                for _ in range(plan.concurrency):
                    tg.start_soon(worker)
        outer.cancel_scope.cancel()
    if progress is not None:
        progress(name, state.done)


async def run_load(
    call: Call,
    plan: LoadPlan,
    progress: Progress | None = None,
    boundary: Boundary | None = None,
) -> LoadOutcome:
    """Warm up for ``plan.warmup`` seconds, then measure; ``progress(phase, done)`` ticks and
    ``boundary("start")`` / ``boundary("end")`` runs right before and after the measured
    phase (to sample CPU counters, say)."""
    if plan.duration is None and plan.requests is None:
        raise ValueError("a load plan needs a duration or a request count")
    state = _State()
    if plan.warmup > 0:
        stop = perf_counter_ns() + plan.warmup * 1e9
        await _phase(
            call, plan, state, name="warmup", stop_ns=stop, recorder=None, progress=progress
        )
    warm_errors, warm_samples = state.errors, list(state.samples)
    state = _State(errors=warm_errors, lost=state.lost, samples=warm_samples)
    if plan.requests is not None:
        state.tickets = plan.requests
    recorder = LatencyRecorder(plan.requests or 1 << 16)
    if boundary is not None:
        boundary("start")
    start = perf_counter_ns()
    stop = math.inf if plan.duration is None else start + plan.duration * 1e9
    await _phase(
        call, plan, state, name="measure", stop_ns=stop, recorder=recorder, progress=progress
    )
    seconds = (perf_counter_ns() - start) / 1e9
    if boundary is not None:
        boundary("end")
    return LoadOutcome(
        completed=recorder.count,
        errors=state.errors,
        lost=state.lost,
        seconds=seconds,
        latencies_ns=recorder.sorted(),
        error_samples=tuple(state.samples),
    )
