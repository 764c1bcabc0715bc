"""Settings: one table of options, read from defaults, TOML, environment and flags.

    options.py  the table: Config, whose every field is an Option (OPTIONS)
    parse.py    what a setting takes: sizes, durations, numbers, ... (Kind)
    load.py     build_config: flags > environment > TOML > default
    checks.py   settings that do not go together
    flags.py    the command line's arguments, from the table
    state.py    where the state directory is when --state-dir is not given

docs/configuration.md's tables are generated from the table
(tools/config_doc.py), and a test checks them.
"""

from ferryman.config.checks import MAX_BLOCK, MIN_BLOCK, MIN_PART, check_combinations
from ferryman.config.load import build_config, load_toml
from ferryman.config.options import CONFIG_FILE, OPTIONS, OPTIONS_BY_ATTR, Config, Option
from ferryman.config.parse import (
    Kind,
    parse_bool,
    parse_count,
    parse_duration,
    parse_locations,
    parse_port,
    parse_positive_duration,
    parse_positive_int,
    parse_size,
    parse_workers,
)

__all__ = [
    "CONFIG_FILE",
    "MAX_BLOCK",
    "MIN_BLOCK",
    "MIN_PART",
    "OPTIONS",
    "OPTIONS_BY_ATTR",
    "Config",
    "Kind",
    "Option",
    "build_config",
    "check_combinations",
    "load_toml",
    "parse_bool",
    "parse_count",
    "parse_duration",
    "parse_locations",
    "parse_port",
    "parse_positive_duration",
    "parse_positive_int",
    "parse_size",
    "parse_workers",
]
