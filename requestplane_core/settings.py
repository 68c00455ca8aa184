"""Typed settings declared as attrs classes, loaded from ``REQUESTPLANE_*`` variables.

A transport declares its settings once::

    @attrs.frozen
    class TcpSettings:
        port: int = setting(0, help="port to bind; 0 lets the OS choose", check=valid_port,
                            accepts="an integer 0..65535")

and the core derives everything else from that class: the variable names
(``REQUESTPLANE_TCP_PORT``), parsing, validation, the error messages and the listing in
``requestplane transports``. Plugins never read the environment themselves.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin

import attrs

from .errors import ConfigError

__all__ = ["SettingField", "describe_settings", "load_settings", "setting"]

S = TypeVar("S")
_META = "requestplane.setting"


@attrs.frozen
class _SettingInfo:
    help: str
    accepts: str | None
    check: Callable[[Any], bool] | None
    secret: bool


def setting(
    default: Any,
    *,
    help: str,
    accepts: str | None = None,
    check: Callable[[Any], bool] | None = None,
    secret: bool = False,
) -> Any:
    """Declare one setting on an attrs class.

    ``check`` validates the parsed value; ``accepts`` says in words what it accepts (it goes
    into the error message and the listing). ``secret`` keeps the value out of every listing
    and error message.
    """
    return attrs.field(
        default=default,
        metadata={_META: _SettingInfo(help, accepts, check, secret)},
        # A settings object ends up in reprs, tracebacks and logs: never with its secrets.
        repr=(lambda value: "'<hidden>'" if value is not None else "None") if secret else True,
    )


@attrs.frozen
class SettingField:
    """One setting as shown to users: its variable, type, default and meaning."""

    name: str
    env_var: str
    type_name: str
    default: Any
    help: str
    accepts: str
    secret: bool


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_NONE = {"", "none"}


def _split_optional(tp: Any) -> tuple[Any, bool]:
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(get_args(tp)) == 2:
            return args[0], True
    return tp, False


def _type_words(tp: Any) -> str:
    base, optional = _split_optional(tp)
    words = {
        int: "an integer",
        float: "a number",
        bool: "a boolean (1/0, true/false, yes/no, on/off)",
        str: "a string",
        Path: "a file path",
    }.get(base, getattr(base, "__name__", str(base)))
    return f"{words}, or 'none'" if optional else words


def _parse(raw: str, tp: Any) -> Any:
    base, optional = _split_optional(tp)
    text = raw.strip()
    if optional and text.lower() in _NONE:
        return None
    if base is bool:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ValueError(raw)
    if base is int:
        return int(text, 0) if text.lower().startswith(("0x", "0o", "0b")) else int(text)
    if base is float:
        value = float(text)
        if value != value:  # NaN compares unequal to itself and passes every range check
            raise ValueError(raw)
        return value
    if base is Path:
        if not text:
            raise ValueError(raw)
        return Path(text)
    if base is str:
        return raw
    raise TypeError(f"unsupported setting type {tp!r}")


def _fields(cls: type[Any]) -> tuple[attrs.Attribute[Any], ...]:
    attrs.resolve_types(cls)
    return tuple(attrs.fields(cls))


def _info(field: attrs.Attribute[Any]) -> _SettingInfo:
    info = field.metadata.get(_META)
    return info if isinstance(info, _SettingInfo) else _SettingInfo("", None, None, False)


def _accepts(field: attrs.Attribute[Any]) -> str:
    return _info(field).accepts or _type_words(field.type)


def describe_settings(cls: type[Any], prefix: str) -> list[SettingField]:
    """The settings of ``cls`` as variables named ``prefix + NAME``, for listings and docs."""
    out = []
    for field in _fields(cls):
        info = _info(field)
        default = field.default
        if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
            default = default.factory()  # type: ignore[union-attr]
        out.append(
            SettingField(
                name=field.name,
                env_var=prefix + field.name.upper(),
                type_name=_type_words(field.type),
                default=default,
                help=info.help,
                accepts=_accepts(field),
                secret=info.secret,
            )
        )
    return out


def _show(value: object, secret: bool) -> str:
    return "'<hidden>'" if secret else repr(value)


def load_settings(
    cls: type[S],
    *,
    prefix: str,
    environ: Mapping[str, str],
    overrides: Mapping[str, object] | None = None,
) -> S:
    """Build ``cls`` from ``environ`` (variables ``prefix + NAME``), then ``overrides``.

    Overrides (settings passed in code) win over the environment. They may be typed values
    or strings, which are parsed like the environment. Every malformed value raises
    :class:`ConfigError` naming where it came from, the value and what is accepted.
    """
    fields = {f.name: f for f in _fields(cls)}
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown setting(s) {', '.join(unknown)} for {prefix}*: "
            f"accepted: {', '.join(sorted(fields)) or 'none'}"
        )
    values: dict[str, Any] = {}
    for name, field in fields.items():
        info = _info(field)
        env_var = prefix + name.upper()
        if name in overrides:
            source, raw = f"setting {name!r} (passed in code)", overrides[name]
        elif env_var in environ:
            source, raw = env_var, environ[env_var]
        else:
            continue
        if isinstance(raw, str) and _split_optional(field.type)[0] is not str:
            try:
                value = _parse(raw, field.type)
            except ValueError:
                raise ConfigError(
                    f"{source}={_show(raw, info.secret)} is malformed: expected {_accepts(field)}"
                ) from None
        else:
            value = raw
        if not _type_ok(value, field.type):
            raise ConfigError(
                f"{source}={_show(value, info.secret)} has the wrong type: "
                f"expected {_accepts(field)}"
            )
        if info.check is not None and value is not None and not info.check(value):
            raise ConfigError(
                f"{source}={_show(raw, info.secret)} is out of range: expected {_accepts(field)}"
            )
        values[name] = value
    return cls(**values)


def _type_ok(value: object, tp: Any) -> bool:
    base, optional = _split_optional(tp)
    if value is None:
        return optional
    if base is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if base is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, base)
