"""A worker process for the nats discovery tests and benchmark: registers instances of one
name into nats discovery, prints ``ready <instance ids>`` and lives until it is killed.

Usage: python nats_discovery_worker.py URL BUCKET NAME TTL [INSTANCE_ID ...]
"""

from __future__ import annotations

import sys

import anyio
from requestplane_nats.discovery_backend import NatsDiscovery
from requestplane_nats.discovery_settings import ENV_PREFIX, NatsDiscoverySettings

from requestplane_core import load_settings
from requestplane_core.discovery import Instance


async def main(url: str, bucket: str, name: str, ttl: str, ids: list[str]) -> None:
    settings = load_settings(
        NatsDiscoverySettings,
        prefix=ENV_PREFIX,
        environ={},
        overrides={"url": url, "bucket": bucket, "ttl": ttl},
    )
    async with anyio.create_task_group() as tg:
        backend = NatsDiscovery(settings)
        backend.start(tg)
        for instance_id in ids or ["worker"]:
            await backend.register(Instance(name, instance_id, "tcp", f"tcp://127.0.0.1:1/{name}"))
        print("ready", *ids, flush=True)
        await anyio.sleep_forever()


if __name__ == "__main__":
    anyio.run(main, *sys.argv[1:5], sys.argv[5:])
