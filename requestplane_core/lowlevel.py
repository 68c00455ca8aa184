"""The fast paths a transport builds its per-request path from, on asyncio (and uvloop) and
trio alike: for transport authors who have profiled their transport and found anyio's
portable primitives on top. A transport needs none of this to be correct; start with anyio
and the :mod:`requestplane_core.plugin_api` face, and come here for the hot path only.

Everything here is resolved once per client, server or connection, in the event loop that
uses it, and then called without looking the backend up again:

- :func:`waiter_factory` / :class:`Waiter`: a one-shot wakeup for one waiting task (a call
  waiting for its answer). ``new = waiter_factory()``, then per wait ``w = new()``,
  ``await w.wait()`` in the waiting task and ``w.set()`` from the code that has the answer.
  A bare future on asyncio, a parked task on trio; ``set()`` may come first, or twice, or
  after the wait was cancelled.
- :func:`loop_timers` / :class:`LoopTimers`: ``clock()`` and ``call_at(when, fn)`` (a
  :class:`TimerHandle` with ``cancel()``) on both loops: ``loop.call_at`` on asyncio, a
  timer task in the given task group on trio (``close()`` stops it). A per-call deadline is
  one timer, cancelled when the answer comes first; far cheaper than a cancel scope with a
  deadline.
- :func:`primitives` / :class:`Primitives`: ``clock``, ``event`` (a waiter factory) and
  either ``call_at`` (asyncio) or ``move_on_at`` (trio), for a transport that takes
  deadlines from timers on asyncio and from cancel scopes on trio.
- :func:`cancel_scope_factory`: the running backend's concrete ``CancelScope`` class, to
  make each request's scope without anyio's per-call backend lookup.
- :func:`request_tasks` / :class:`RequestTasks` and :class:`Spawner`: one native task per
  request, still structured: ``async with request_tasks() as tasks`` around the reader of
  a connection (its tasks end with the block), or a :class:`Spawner` for as long as a
  server runs (``start``, ``spawn``, ``join``). Spawning through an anyio task group costs
  several times what the loop's own spawn does.

"Answer now or spawn": a transport that can answer from where it reads asks
``dispatch.answer_now(request)`` first. ``bytes`` or an error is the outcome: send it there,
with no task and no scope. A :class:`~requestplane_core.plugin_api.Pending` goes to a task:
make its scope with the factory from :func:`cancel_scope_factory`, keep the scope where a
cancel message can find it, and spawn ``dispatch.handle(request, responder, scope,
pending)`` with :func:`request_tasks` or a :class:`Spawner`. ``requestplane_tcp/server.py``
(``_ServerConnection.on_frame``) and ``requestplane_nats/server.py`` (``_dispatch``) do
exactly that.

Rules: call the factories in the event loop that will use what they return; ``set()``,
``call_at`` and ``spawn`` are for that loop's own thread (from another thread, go through
``anyio.from_thread``). Timer callbacks must not raise (one that does is logged).
"""

from ._lowlevel.loop_primitives import Primitives, cancel_scope_factory, primitives
from ._lowlevel.request_tasks import RequestTasks, Spawn, Spawner, request_tasks
from ._lowlevel.timers import LoopTimers, TimerHandle, loop_timers
from ._lowlevel.waiter import Waiter, waiter_factory

__all__ = [
    "LoopTimers",
    "Primitives",
    "RequestTasks",
    "Spawn",
    "Spawner",
    "TimerHandle",
    "Waiter",
    "cancel_scope_factory",
    "loop_timers",
    "primitives",
    "request_tasks",
    "waiter_factory",
]
