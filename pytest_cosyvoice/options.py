"""How a setting is declared and read: an `Option` (its flag, environment variable, ini key, parser and
default), its registration with pytest and its resolution, command line > environment > ini > default,
with `BadValue` from a parser turned into a usage error naming the source. The plugin's table of options
is settings.OPTIONS; the gate suites declare theirs with the same pieces (suites/limits.py)."""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

import pytest

from cosyvoice_runtime import InvalidInput, check_timeout
from cosyvoice_runtime.limits import MAX_TIMEOUT_S

T = TypeVar("T")

TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off", ""}


class BadValue(Exception):
    """A value that does not parse; the message says what was expected. An `Option`'s parse raises
    it; `resolve_options` turns it into the usage error naming where the value came from."""


def one_of(names: tuple[str, ...]) -> str:
    return f"{', '.join(names[:-1])} or {names[-1]}"


def parse_text(v: str) -> str:
    return v


def parse_path(v: str) -> Path:
    return Path(v).expanduser()


def absolute(path: Path, base: Path) -> Path:
    """A folder or file setting as the one path every part of the session uses: `~` expanded, a
    relative path under `base` (the directory pytest was invoked from)."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else Path(base) / p


def parse_bool(v: str) -> bool:
    s = v.strip().lower()
    if s in TRUE:
        return True
    if s in FALSE:
        return False
    raise BadValue("expected true/false (1/0, yes/no, on/off)")


def parse_seconds(v: str) -> float:
    try:
        return check_timeout("seconds", float(v))  # the runtime's rule: the plugin never passes what it refuses
    except (ValueError, InvalidInput):
        raise BadValue(f"expected a positive number of seconds, finite and at most {MAX_TIMEOUT_S:g}") from None


def parse_fraction(v: str) -> float:
    try:
        x = float(v)
    except ValueError:
        x = -1.0
    if not 0 <= x < 100:
        raise BadValue("expected a fraction >= 0, e.g. 0.10 for 10 %")
    return x


@dataclass(frozen=True)
class Option(Generic[T]):
    """One setting: where it can come from, how its text parses, and its default (the one place it
    is written: `Settings`' field defaults are read from here)."""

    name: str                      # Settings field
    flag: str                      # command line
    ini: str
    env: str | None
    parse: Callable[[str], T]
    default: T
    help: str
    is_flag: bool = False          # store_true on the command line, bool in ini/env
    metavar: str | None = None


def register_options(parser: pytest.Parser, options: tuple[Option[Any], ...], group_name: str,
                     description: str) -> None:
    """Each option as a command-line flag (in the help group `group_name`) and an ini key; its
    environment variable is named in the flag's help. Also used by the gate suites (suites/limits.py)."""
    group = parser.getgroup(group_name, description)
    for opt in options:
        env = f" [env {opt.env}]" if opt.env else ""
        if opt.is_flag:
            # default None, so "not given" falls through to env/ini.
            group.addoption(opt.flag, action="store_true", default=None, dest=opt.name, help=opt.help + env)
        else:
            group.addoption(opt.flag, action="store", default=None, dest=opt.name, metavar=opt.metavar,
                            help=opt.help + env)
        ini_type: Literal["bool", "string"] = "bool" if opt.is_flag else "string"
        parser.addini(opt.ini, help=opt.help, type=ini_type, default=None)


def resolve_options(config: pytest.Config, options: tuple[Option[Any], ...],
                    environ: Mapping[str, str] | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    """({name: value}, {name: where from}) for `options` registered with `register_options`:
    command line > environment > ini > default. `pytest.UsageError` on a value that does not
    parse, naming its source (`--flag='x'`, `ENV='x'`, `ini key='x'`) and what was expected."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for opt in options:
        cli = config.getoption(opt.name, None)
        ini = config.getini(opt.ini)
        if cli is not None:
            raw, where = cli, opt.flag
        elif opt.env and env.get(opt.env, "") != "":
            raw, where = env[opt.env], opt.env
        elif ini is not None and ini != "":
            raw, where = ini, f"ini {opt.ini}"
        else:
            values[opt.name], sources[opt.name] = opt.default, "default"
            continue
        try:
            values[opt.name] = raw if isinstance(raw, bool) else opt.parse(str(raw))
        except BadValue as e:
            raise pytest.UsageError(f"{where}={raw!r}: {e}") from None
        sources[opt.name] = where
    return values, sources
