"""One typed configuration object, loaded from TOML, then the environment, then flags.

Precedence (later wins): built-in defaults < TOML file < ``RAZVILKA_*`` environment < ``--set`` flags.

* TOML: ``--config PATH``, else ``$RAZVILKA_CONFIG``, else ``~/.config/razvilka/config.toml`` if present.
* Environment: ``RAZVILKA_<SECTION>__<FIELD>=value`` (double underscore between levels),
  e.g. ``RAZVILKA_BUS__TRANSPORT=tcp`` or ``RAZVILKA_INPUTS__GAZE__DWELL_MS=500``.
* Flags: ``--set bus.transport=tcp`` (repeatable), plus the named flags each subcommand offers.

Each component owns the class of its own section; this module only composes them.
"""
from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from razvilka.daemon.config import (
    DaemonConfig,
    GatingConfig,
    KeyboardConfig,
    ModelConfig,
    PhrasesConfig,
    RecordConfig,
    StoreConfig,
)
from razvilka.inputs.config import InputsConfig
from razvilka.inputs.scan import ScanConfig
from razvilka.outconfig import SpeechConfig, TextOutConfig
from razvilka.protocol.config import BusConfig
from razvilka.renderers.config import RenderersConfig

ENV_PREFIX = "RAZVILKA_"


class ConfigError(ValueError):
    """A configuration value could not be read; the message names the key and the source."""


class Config(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The root configuration: one section per component."""

    bus: BusConfig = msgspec.field(default_factory=BusConfig)
    model: ModelConfig = msgspec.field(default_factory=ModelConfig)
    gating: GatingConfig = msgspec.field(default_factory=GatingConfig)
    daemon: DaemonConfig = msgspec.field(default_factory=DaemonConfig)
    store: StoreConfig = msgspec.field(default_factory=StoreConfig)
    record: RecordConfig = msgspec.field(default_factory=RecordConfig)
    keyboard: KeyboardConfig = msgspec.field(default_factory=KeyboardConfig)
    inputs: InputsConfig = msgspec.field(default_factory=InputsConfig)
    scan: ScanConfig = msgspec.field(default_factory=ScanConfig)
    renderers: RenderersConfig = msgspec.field(default_factory=RenderersConfig)
    speech: SpeechConfig = msgspec.field(default_factory=SpeechConfig)
    textout: TextOutConfig = msgspec.field(default_factory=TextOutConfig)
    phrases: PhrasesConfig = msgspec.field(default_factory=PhrasesConfig)


def default_config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "razvilka" / "config.toml"


def config_file(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Path:
    """The TOML file the configuration comes from, and where settings the person changes are saved (protocol
    1.5 ``config.update``): ``path`` (``--config``), else ``$RAZVILKA_CONFIG``, else the default path."""
    env = os.environ if env is None else env
    if path:
        return Path(path)
    return Path(env["RAZVILKA_CONFIG"]) if env.get("RAZVILKA_CONFIG") else default_config_path()


def _parse_scalar(text: str) -> Any:
    """Read an env/flag value as TOML when it parses (numbers, booleans, arrays), else as a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _set_path(tree: dict[str, Any], path: list[str], value: Any, source: str) -> None:
    node = tree
    for key in path[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{source}: {'.'.join(path)} goes through {key!r}, which is not a section")
        node = child
    node[path[-1]] = value


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def load_config(
    path: str | Path | None = None,
    *,
    overrides: list[str] | tuple[str, ...] = (),
    env: Mapping[str, str] | None = None,
) -> Config:
    """Build the configuration from TOML, environment and ``key=value`` overrides."""
    env = os.environ if env is None else env
    tree: dict[str, Any] = {}
    chosen: Path | None = config_file(path, env)
    if not (path or env.get("RAZVILKA_CONFIG")) and chosen is not None and not chosen.is_file():
        chosen = None  # no file of the person's yet: the defaults
    if chosen is not None:
        try:
            tree = tomllib.loads(chosen.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {chosen} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {chosen} is not valid TOML: {exc}") from None
    for name, raw in sorted(env.items()):
        if not name.startswith(ENV_PREFIX) or name == "RAZVILKA_CONFIG" or "__" not in name:
            continue
        keys = [part.lower() for part in name[len(ENV_PREFIX):].split("__")]
        _set_path(tree, keys, _parse_scalar(raw), f"environment {name}")
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected section.key=value")
        key, raw = item.split("=", 1)
        _set_path(tree, key.strip().split("."), _parse_scalar(raw.strip()), f"--set {key}")
    return from_dict(tree)


def from_dict(tree: Mapping[str, Any]) -> Config:
    try:
        return msgspec.convert(dict(tree), Config, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid configuration: {exc}") from None


def to_toml_dict(config: Config) -> dict[str, Any]:
    """The effective configuration as plain data (for ``razvilka config`` and stored run configs)."""
    return msgspec.to_builtins(config)
