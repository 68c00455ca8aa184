"""The ``requestplane`` command: list transports and discovery backends, serve the demo
endpoints, list the live instances of a name, call an address or a name."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
import warnings
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TextIO

import anyio

from .address import Address
from .commands import add_command_plugins
from .config import ROUTE_MODES, discovery_env_prefix, transport_env_prefix
from .demo import DEMO_ENDPOINTS
from .discovery import Added, Instance, Removed, Snapshot, WatchEvent
from .errors import ConfigError, RequestPlaneError
from .manager import RequestPlane, installed_transports
from .plugins import PluginWarning
from .request import Request
from .settings import SettingField, describe_settings

__all__ = ["main"]

BACKENDS = ("asyncio", "trio")


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


# -- transports ---------------------------------------------------------------------------


def _settings_records(fields: list[SettingField]) -> list[dict[str, Any]]:
    return [
        {
            "env": f.env_var,
            "default": None if f.secret and f.default is not None else f.default,
            "accepts": f.accepts,
            "help": f.help,
        }
        for f in fields
    ]


def _out_settings(settings: list[dict[str, Any]]) -> None:
    """``VARIABLE=default`` in one column, the help in the next, aligned for the longest."""
    pairs = [f"{s['env']}={s['default']!s}" for s in settings]
    width = max(map(len, pairs), default=0)
    for pair, s in zip(pairs, settings, strict=True):
        _out(f"    {pair:<{width}}  {s['help']}")


def cmd_transports(args: argparse.Namespace) -> int:
    registry = installed_transports()
    for name, loaded in sorted(registry.transports.items()):
        spec = loaded.spec
        caps = spec.capabilities
        settings = _settings_records(describe_settings(spec.settings, transport_env_prefix(name)))
        record: dict[str, Any] = {
            "kind": "transport",
            "name": name,
            "distribution": loaded.distribution,
            "version": loaded.version,
            "description": spec.description,
            "schemes": list(spec.address_schemes),
            "capabilities": {
                "streaming": caps.streaming,
                "cancellation": caps.cancellation,
                "deadlines": caps.deadlines,
                "backends": sorted(caps.backends),
            },
            "settings": settings,
        }
        if args.json:
            _out(json.dumps(record, default=str))
            continue
        dist = f"{loaded.distribution} {loaded.version}" if loaded.distribution else loaded.plugin
        _out(f"{name}  ({dist})  {spec.description}")
        flags = [k for k in ("streaming", "cancellation", "deadlines") if getattr(caps, k)]
        _out(f"    capabilities: {', '.join(flags)}; backends: {', '.join(sorted(caps.backends))}")
        _out_settings(settings)
    for name, found in sorted(registry.discovery.items()):
        dspec = found.spec
        settings = _settings_records(describe_settings(dspec.settings, discovery_env_prefix(name)))
        if args.json:
            _out(
                json.dumps(
                    {
                        "kind": "discovery",
                        "name": name,
                        "distribution": found.distribution,
                        "version": found.version,
                        "description": dspec.description,
                        "settings": settings,
                    },
                    default=str,
                )
            )
            continue
        dist = f"{found.distribution} {found.version}" if found.distribution else found.plugin
        _out(f"discovery {name}  ({dist})  {dspec.description}")
        _out_settings(settings)
    for broken in registry.broken:
        if args.json:
            _out(
                json.dumps(
                    {
                        "name": broken.name,
                        "distribution": broken.distribution,
                        "broken": broken.reason,
                    }
                )
            )
        else:
            _out(f"{broken.name}  BROKEN ({broken.distribution}): {broken.reason}")
    for name in registry.disabled:
        if args.json:
            _out(json.dumps({"name": name, "disabled": True}))
        else:
            _out(f"{name}  disabled by REQUESTPLANE_PLUGINS / REQUESTPLANE_DISABLE_PLUGINS")
    return 0


# -- serve --------------------------------------------------------------------------------


async def _serve(args: argparse.Namespace) -> int:
    plane = RequestPlane(args.mode)
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with plane:
            server = await plane.server()
            instance = server.instance_id

            def whoami(request: Request) -> bytes:
                """Answer this server's instance id: which instance answered a call."""
                return (instance or "").encode()

            for name, handler in {**DEMO_ENDPOINTS, "whoami": whoami}.items():
                address = await server.register(name, handler)
                if args.json:
                    record = {"endpoint": name, "address": str(address)}
                    if instance is not None:
                        record.update(name=name, instance=instance)
                    _out(json.dumps(record))
                else:
                    where = f" as instance {instance}" if instance else ""
                    _out(f"serving {name} at {address}{where}")
            async for signum in signals:
                if not args.json:
                    _out(f"received {signal.Signals(signum).name}; draining")
                break
    return 0


# -- call ---------------------------------------------------------------------------------


def _payload(args: argparse.Namespace) -> bytes:
    if args.data is not None:
        return str(args.data).encode()
    if args.data_file is not None:
        return bytes(args.data_file)  # read by the parser (_file_bytes)
    if sys.stdin is None or sys.stdin.isatty():
        return b""
    return sys.stdin.buffer.read()


def _headers(pairs: Sequence[tuple[str, str]]) -> dict[str, str]:
    return dict(pairs)


# Usage errors (exit 2, with the usage line): argparse reports an ArgumentTypeError raised
# while it converts an argument.
def _header_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r}: expected KEY=VALUE")
    return key, value


def _file_bytes(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot read {path}: {exc.strerror}") from None


def _mode_for(address: Address) -> str:
    """The transport whose client speaks ``address``'s scheme (``http`` for ``https``...):
    the one whose spec lists it in ``address_schemes``, else the transport named like it."""
    for name, loaded in installed_transports().transports.items():
        if address.scheme in loaded.spec.address_schemes:
            return name
    return address.scheme


async def _call(args: argparse.Namespace) -> int:
    payload, headers = _payload(args), _headers(args.header)
    if "://" not in args.address:
        return await _call_name(args, payload, headers)
    address = Address.parse(args.address)
    out = sys.stdout.buffer
    async with RequestPlane(_mode_for(address)) as plane:
        client = plane.client()
        if args.stream:
            async with client.stream(address, payload, headers=headers, timeout=args.timeout) as s:
                async for chunk in s:
                    out.write(chunk)
                    out.flush()
        else:
            out.write(await client.request(address, payload, headers=headers, timeout=args.timeout))
            out.flush()
    return 0


async def _call_name(args: argparse.Namespace, payload: bytes, headers: dict[str, str]) -> int:
    """``call NAME``: resolve the name through discovery and call a live instance."""
    out = sys.stdout.buffer
    async with RequestPlane() as plane:
        router = plane.router(args.address, route=args.route)
        if args.stream:
            async with router.stream(
                payload, headers=headers, timeout=args.timeout, key=args.key, instance=args.instance
            ) as s:
                async for chunk in s:
                    out.write(chunk)
                    out.flush()
        else:
            reply = await router.request(
                payload, headers=headers, timeout=args.timeout, key=args.key, instance=args.instance
            )
            out.write(reply)
            out.flush()
    return 0


# -- instances ----------------------------------------------------------------------------


def _instance_record(instance: Instance, now: float) -> dict[str, Any]:
    return {
        "name": instance.name,
        "instance": instance.instance_id,
        "transport": instance.transport,
        "address": instance.address,
        "age": round(max(0.0, now - instance.registered_at), 3) if instance.registered_at else None,
        "metadata": dict(instance.metadata),
    }


def _print_instance(args: argparse.Namespace, instance: Instance, event: str | None) -> None:
    record = _instance_record(instance, time.time())
    if args.json:
        _out(json.dumps({"event": event, **record} if event else record))
        return
    labels = ",".join(f"{k}={v}" for k, v in record["metadata"].items()) or "-"
    age = "-" if record["age"] is None else f"{record['age']:.1f}s"
    prefix = f"{event:<8} " if event else ""
    _out(
        f"{prefix}{record['name']}  {record['instance']}  {record['transport']}  "
        f"{record['address']}  age {age}  {labels}"
    )


async def _instances(args: argparse.Namespace) -> int:
    async with RequestPlane() as plane:
        discovery = plane.discovery()
        names = [args.name] if args.name else await discovery.names()
        if not args.watch:
            for name in names:
                for instance in await discovery.list_instances(name):
                    _print_instance(args, instance, None)
            return 0
        if not args.name:
            raise ConfigError("instances --watch needs a NAME to watch")
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with anyio.create_task_group() as tg:

                async def stop() -> None:
                    async for _ in signals:
                        tg.cancel_scope.cancel()
                        return

                tg.start_soon(stop)
                async with discovery.watch(args.name) as watch:
                    async for event in watch:
                        _print_event(args, event)
                tg.cancel_scope.cancel()
    return 0


def _print_event(args: argparse.Namespace, event: WatchEvent) -> None:
    if isinstance(event, Snapshot):
        for instance in event.instances:
            _print_instance(args, instance, "live")
    elif isinstance(event, Added):
        _print_instance(args, event.instance, "added")
    elif isinstance(event, Removed):
        _print_instance(args, event.instance, "removed")


# -- entry point --------------------------------------------------------------------------


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds > 0")
    return value


def _parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="requestplane", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("transports", help="list installed transports and their settings")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(run=cmd_transports)

    p = sub.add_parser("serve", help="serve the demo endpoints echo and stream until SIGINT")
    p.add_argument("--mode", help="transport (default: REQUESTPLANE_MODE, else tcp)")
    p.add_argument("--backend", choices=BACKENDS, default="asyncio")
    p.add_argument("--json", action="store_true", help="print one JSON object per endpoint")
    p.set_defaults(run_async=_serve)

    p = sub.add_parser(
        "call", help="call an endpoint address, or a name through discovery, and print the response"
    )
    p.add_argument(
        "address",
        metavar="ADDRESS|NAME",
        help="an address (tcp://127.0.0.1:41234/echo) or a name found through discovery (echo)",
    )
    p.add_argument("--route", choices=ROUTE_MODES, help="how to pick the instance of a NAME")
    p.add_argument("--key", help="the key of --route hash (e.g. a session id)")
    p.add_argument("--instance", help="the instance id of --route direct")
    data = p.add_mutually_exclusive_group()
    data.add_argument("--data", "-d", help="the payload (default: standard input)")
    data.add_argument("--data-file", type=_file_bytes, help="read the payload from this file")
    p.add_argument(
        "-H", "--header", action="append", default=[], metavar="KEY=VALUE", type=_header_pair
    )
    p.add_argument("--stream", action="store_true", help="print chunks as they arrive")
    p.add_argument("--timeout", type=_positive_float, help="seconds for the whole call")
    p.add_argument("--backend", choices=BACKENDS, default="asyncio")
    p.set_defaults(run_async=_call)

    p = sub.add_parser("instances", help="list the live instances of a name (discovery)")
    p.add_argument("name", nargs="?", help="e.g. llm/decode/generate (default: every name)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--watch", action="store_true", help="print added/removed events until SIGINT")
    p.add_argument("--backend", choices=BACKENDS, default="asyncio")
    p.set_defaults(run_async=_instances)

    # Other distributions' subcommands (requestplane-bench's ``bench``): see commands.py.
    add_command_plugins(sub, argv, builtin=set(sub.choices))
    return parser


def _fail(exc: RequestPlaneError) -> int:
    sys.stderr.write(f"error: {type(exc).__name__}: {exc}\n")
    return 1


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """A plugin that failed to load is one plain line naming it and the cause, not Python's
    warning format (a core file and source line mean nothing to the user)."""
    if issubclass(category, PluginWarning):
        sys.stderr.write(f"warning: {message}\n")
    else:
        _python_show_warning(message, category, filename, lineno, file, line)


_python_show_warning = warnings.showwarning


def main(argv: Sequence[str] | None = None) -> int:
    warnings.showwarning = _show_warning
    argv = sys.argv[1:] if argv is None else argv
    args = _parser(argv).parse_args(argv)
    try:
        if hasattr(args, "run_async"):
            runner: Callable[[argparse.Namespace], Coroutine[Any, Any, int]] = args.run_async
            return int(anyio.run(runner, args, backend=args.backend))
        return int(args.run(args))
    except RequestPlaneError as exc:
        return _fail(exc)
    except BaseExceptionGroup as group:
        # Task groups wrap errors; a single typed error inside is still that error.
        leaves = _leaves(group)
        if len(leaves) == 1 and isinstance(leaves[0], RequestPlaneError):
            return _fail(leaves[0])
        raise
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
