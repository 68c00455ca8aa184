"""The subject scheme: where an endpoint listens and how a caller reaches it.

With prefix ``P``, an endpoint named ``E`` and an instance id ``I``::

    P.E            shared subject: every instance serving E subscribes in the queue group,
                   so NATS hands each request to exactly one of them (load balancing)
    P.E._I         per-instance subject: reaches this one server only
    P.E._cancel    cancel subject: every instance serving E listens (no queue group); the
                   payload names the reply inbox of the request to cancel
    P._alive._I    liveness subject: instance I answers any request on it; "no responders"
                   there means I is gone (a caller's heartbeat watchdog asks it)

Dots in an endpoint name become subject levels, so ``llm.backend.generate`` is
``requestplane.llm.backend.generate`` and NATS permissions can grant ``requestplane.llm.>``.
Characters NATS gives a meaning to are escaped per level (``%`` -> ``%25``, ``*`` -> ``%2A``,
``>`` -> ``%3E``, a leading ``_`` -> ``%5F``, an empty level -> ``%``), so no endpoint name can
produce a reserved ``_`` level or collide with another name.
"""

from __future__ import annotations

from urllib.parse import unquote

__all__ = [
    "CANCEL_TOKEN",
    "cancel_subject_for",
    "endpoint_from_subject",
    "endpoint_subject",
    "instance_subject",
    "liveness_subject",
    "valid_subject",
    "valid_token",
]

CANCEL_TOKEN = "_cancel"
_ESCAPES = {"%": "%25", "*": "%2A", ">": "%3E"}


def valid_token(token: str) -> bool:
    """A single subject level: non-empty, printable, no whitespace, dots or wildcards."""
    return bool(token) and token.isprintable() and not any(c.isspace() or c in ".*>" for c in token)


def valid_subject(subject: str) -> bool:
    """A literal subject (publishable: no wildcards)."""
    return all(valid_token(t) for t in subject.split("."))


def _escape_token(token: str) -> str:
    if not token:
        return "%"
    out = "".join(
        _ESCAPES.get(c, c)
        if c.isprintable() and not c.isspace()
        else "".join(f"%{b:02X}" for b in c.encode())
        for c in token
    )
    if out.startswith("_"):
        out = "%5F" + out[1:]
    return out


def endpoint_subject(prefix: str, endpoint: str) -> str:
    return prefix + "." + ".".join(_escape_token(t) for t in endpoint.split("."))


def instance_subject(prefix: str, endpoint: str, instance: str) -> str:
    return f"{endpoint_subject(prefix, endpoint)}._{instance}"


def liveness_subject(prefix: str, instance: str) -> str:
    return f"{prefix}._alive._{instance}"


def cancel_subject_for(subject: str) -> str:
    """The cancel subject for a request sent to ``subject`` (shared or per-instance).

    Endpoint levels never start with ``_``, so a last level that does is the instance marker.
    """
    head, _, last = subject.rpartition(".")
    if head and last.startswith("_"):
        subject = head
    return f"{subject}.{CANCEL_TOKEN}"


def _unescape_token(token: str) -> str:
    if token == "%":
        return ""
    return unquote(token)


def endpoint_from_subject(prefix: str, subject: str) -> str:
    """The endpoint name a shared or per-instance subject under ``prefix`` designates (the
    inverse of :func:`endpoint_subject`); a subject outside the prefix is returned as is."""
    if not subject.startswith(prefix + "."):
        return subject
    levels = subject[len(prefix) + 1 :].split(".")
    if len(levels) > 1 and levels[-1].startswith("_"):
        levels.pop()  # the instance marker: endpoint levels never start with "_"
    return ".".join(_unescape_token(t) for t in levels)
