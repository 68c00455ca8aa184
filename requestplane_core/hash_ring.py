"""Consistent hashing: a key keeps its instance while instances come and go.

Each instance owns many points on a ring of 64-bit hashes; a key goes to the owner of the
first point at or after the key's own hash. When an instance joins or leaves, only the keys
between its points and their predecessors move: about 1/N of them.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Container, Iterable

__all__ = ["HashRing"]

#: Points per instance: enough that N instances split the ring within a few percent.
REPLICAS = 128


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


class HashRing:
    def __init__(self, members: Iterable[str], replicas: int = REPLICAS) -> None:
        points = sorted((_hash(f"{m}#{i}"), m) for m in set(members) for i in range(replicas))
        self._hashes = [h for h, _ in points]
        self._owners = [m for _, m in points]
        self._members = len(set(self._owners))

    def __len__(self) -> int:
        return self._members

    def lookup(self, key: str, skip: Container[str] = ()) -> str | None:
        """The member owning ``key``, passing over those in ``skip`` (tried already, set
        aside) to the next one along the ring; None when every member is skipped."""
        if not self._hashes:
            return None
        start = bisect.bisect_left(self._hashes, _hash(key))
        count = len(self._hashes)
        seen: set[str] = set()
        for offset in range(count):
            owner = self._owners[(start + offset) % count]
            if owner not in skip:
                return owner
            seen.add(owner)
            if len(seen) == self._members:
                return None
        return None
