"""A Config from its four layers: each setting from the highest that sets it.

Precedence, lowest first: the built-in default, the TOML file named by
`--config` (or FERRYMAN_CONFIG), the environment (`FERRYMAN_<NAME>`), the
command line. Only the value that wins is parsed, so a bad value that a
higher layer overrides is never read; a bad value that wins is a
ConfigError naming its flag.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from typing import Any

from ferryman.config.options import CONFIG_FILE, OPTIONS, OPTIONS_BY_ATTR, Config
from ferryman.errors import ConfigError


def build_config(cli: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Config:
    """`cli` holds each option's flag value by attribute name (None: not given), as
    argparse leaves them; the environment is os.environ unless given."""
    environ = os.environ if environ is None else environ
    config_file = cli.get(CONFIG_FILE.attr) or environ.get(CONFIG_FILE.env)
    from_file = read_settings(config_file) if config_file else {}
    resolved: dict[str, Any] = {}
    for option in OPTIONS:
        if cli.get(option.attr) is not None:
            given = cli[option.attr]
        elif option.env in environ:  # set, even when empty
            given = environ[option.env]
        elif option.attr in from_file:
            given = from_file[option.attr]
        else:
            continue  # the default: already a value, never parsed
        try:
            resolved[option.attr] = option.kind.parse(given)
        except ConfigError as exc:
            raise ConfigError(f"--{option.name}: {exc}") from None
    return Config(**resolved)


def read_settings(path: str) -> dict[str, Any]:
    """The file's settings by attribute name; an unknown one is a ConfigError."""
    from_file = load_toml(path)
    unknown = sorted(set(from_file) - set(OPTIONS_BY_ATTR))
    if unknown:
        raise ConfigError(f"unknown setting(s) in {path}: {', '.join(unknown)}")
    return from_file


def load_toml(path: str) -> dict[str, Any]:
    """Keys at the top level and in [serve] (which wins), dashes read as underscores."""
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    serve = data.pop("serve", {})
    flat = {**data, **serve} if isinstance(serve, dict) else data
    return {key.replace("-", "_"): value for key, value in flat.items()}
