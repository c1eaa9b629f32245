"""Server settings declared once: a config dataclass is the source of each setting's name,
default, help text, command-line option and ``SEALGATE_*`` environment variable.

A field declared with :func:`setting` becomes the option ``--field-name`` (or the names
given) and the variable ``<PREFIX>_FIELD_NAME``; :func:`click_options` turns a whole
config class into ``click`` options, :func:`config_from` builds the config back from the
parsed values. Containers set the variables; people type the options; both land in the
same dataclass, validated in one place.

No I/O here: ``click`` is imported when options are built, by the server CLIs.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import MISSING, dataclass
from typing import Any, TypeVar

__all__ = ["Setting", "click_options", "config_from", "setting", "settings_of"]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

_META = "sealgate.setting"


@dataclass(frozen=True, slots=True)
class _Meta:
    help: str
    parse: Callable[[str], Any] | None
    show: Callable[[Any], str] | None
    minimum: float | None
    names: tuple[str, ...]
    metavar: str | None


def setting(
    default: Any = MISSING,
    *,
    help: str,
    default_factory: Callable[[], Any] | Any = MISSING,
    parse: Callable[[str], Any] | None = None,
    show: Callable[[Any], str] | None = None,
    minimum: float | None = None,
    names: Iterable[str] = (),
    metavar: str | None = None,
) -> Any:
    """A dataclass field that is also a server setting.

    ``parse`` reads one value from text (an option's or variable's; raise ``ValueError``
    with a message a user can act on); it is required for types other than ``bool``,
    ``int``, ``float`` and ``str`` and for the items of ``tuple``/``frozenset`` fields,
    which are given as repeated options or one comma-separated variable. ``show`` renders
    the default in ``--help``. ``minimum`` bounds numbers. ``names`` replaces the option
    spelling derived from the field name.
    """
    meta = _Meta(help, parse, show, minimum, tuple(names), metavar)
    if default_factory is not MISSING:
        return dataclasses.field(default_factory=default_factory, metadata={_META: meta})
    return dataclasses.field(default=default, metadata={_META: meta})


@dataclass(frozen=True, slots=True)
class Setting:
    """One setting of a config class, as the command line and the environment see it."""

    name: str
    names: tuple[str, ...]
    envvar: str
    kind: str  # "flag", "int", "float", "str", "parsed", "many"
    default: Any
    help: str
    parse: Callable[[str], Any] | None
    show: Callable[[Any], str] | None
    minimum: float | None
    metavar: str | None
    container: type | None  # tuple or frozenset for "many"


def settings_of(cls: type, env_prefix: str) -> list[Setting]:
    """The settings of the dataclass ``cls``, each variable named ``env_prefix_FIELD``."""
    hints = typing.get_type_hints(cls)
    out: list[Setting] = []
    for f in dataclasses.fields(cls):
        meta = f.metadata.get(_META)
        if meta is None:
            continue
        hint = hints[f.name]
        kind, container = _kind(hint, meta.parse, f"{cls.__name__}.{f.name}")
        default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[operator]
        option = "--" + f.name.replace("_", "-")
        out.append(
            Setting(
                name=f.name,
                names=meta.names or (option,),
                envvar=f"{env_prefix}_{f.name.upper()}",
                kind=kind,
                default=default,
                help=meta.help,
                parse=meta.parse,
                show=meta.show,
                minimum=meta.minimum,
                metavar=meta.metavar,
                container=container,
            )
        )
    return out


def _kind(hint: Any, parse: Callable[[str], Any] | None, where: str) -> tuple[str, type | None]:
    origin = typing.get_origin(hint)
    if origin in (tuple, frozenset):
        if parse is None and typing.get_args(hint)[0] is not str:
            raise TypeError(f"{where}: give parse= for the items of a {origin.__name__}")
        return "many", origin
    if parse is not None:
        return "parsed", None
    if hint is bool:
        return "flag", None
    if hint in (int, float, str):
        return hint.__name__, None
    if origin in (types.UnionType, typing.Union):
        raise TypeError(f"{where}: give parse= for an optional setting")
    raise TypeError(f"{where}: unsupported setting type {hint!r}")


def click_options(cls: type, env_prefix: str) -> Callable[[F], F]:
    """Decorate a ``click`` command with one option per setting of ``cls``."""
    import click

    class Parsed(click.ParamType):  # type: ignore[type-arg]  # generic from click 8.2 on
        envvar_list_splitter = ","

        def __init__(self, parse: Callable[[str], Any], metavar: str) -> None:
            self._parse = parse
            self.name = metavar

        def convert(
            self, value: Any, param: click.Parameter | None, ctx: click.Context | None
        ) -> Any:
            if not isinstance(value, str):
                return value  # a default, already a value
            try:
                return self._parse(value.strip())
            except ValueError as exc:
                self.fail(str(exc), param, ctx)

    def option(s: Setting) -> Callable[[F], F]:
        common: dict[str, Any] = {
            "envvar": s.envvar,
            "show_envvar": True,
            "help": s.help,
            "show_default": s.show(s.default) if s.show else True,
        }
        if s.metavar:
            common["metavar"] = s.metavar
        if s.kind == "flag":
            flag = s.names[0].removeprefix("--")
            return click.option(f"--{flag}/--no-{flag}", s.name, default=s.default, **common)
        if s.kind == "many":
            parse = s.parse or str
            return click.option(
                *s.names,
                s.name,
                multiple=True,
                default=tuple(s.default),
                type=Parsed(parse, s.metavar or "TEXT"),
                **common,
            )
        click_type: Any
        if s.kind == "parsed":
            assert s.parse is not None
            click_type = Parsed(s.parse, s.metavar or "VALUE")
        elif s.kind == "int":
            minimum = None if s.minimum is None else int(s.minimum)
            click_type = click.IntRange(min=minimum) if minimum is not None else int
        elif s.kind == "float":
            click_type = click.FloatRange(min=s.minimum) if s.minimum is not None else float
        else:
            click_type = str
        return click.option(*s.names, s.name, default=s.default, type=click_type, **common)

    def decorate(command: F) -> F:
        for s in reversed(settings_of(cls, env_prefix)):
            command = option(s)(command)
        return command

    return decorate


def config_from(cls: type[T], values: dict[str, Any], **overrides: Any) -> T:
    """Build ``cls`` from the parsed option values (others in ``values`` are ignored)."""
    kwargs: dict[str, Any] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in overrides:
            kwargs[f.name] = overrides[f.name]
        elif f.name in values and _META in f.metadata:
            value = values[f.name]
            origin = typing.get_origin(hints[f.name])
            if origin is frozenset:
                value = frozenset(value)
            elif origin is tuple:
                value = tuple(value)
            kwargs[f.name] = value
    return cls(**kwargs)
