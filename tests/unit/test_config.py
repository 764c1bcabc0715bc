"""Settings: parsing, precedence (default < TOML < environment < flags), and docs."""

from __future__ import annotations

import argparse
import json
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ferryman.cli import build_parser
from ferryman.config import (
    OPTIONS,
    OPTIONS_BY_ATTR,
    Config,
    Option,
    build_config,
    check_combinations,
    parse_duration,
    parse_size,
)
from ferryman.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "size"),
    [("512", 512), ("8k", 8192), ("64KiB", 65536), ("1M", 1048576), ("2GB", 2 * 10**9),
     ("1.5k", 1536), (" 10 b ", 10)],
)  # fmt: skip
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30.0), ("500ms", 0.5), ("2m", 120.0), ("1h", 3600.0), ("7", 7.0)]
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "-1", "12parsecs", "k", "1e9"])
def test_bad_values_are_config_errors(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_size(text)
    with pytest.raises(ConfigError):
        parse_duration(text)


@given(st.integers(0, 10**12))
def test_plain_numbers_are_bytes(n: int) -> None:
    assert parse_size(str(n)) == n


def cli(*argv: str) -> dict[str, object]:
    args = vars(build_parser().parse_args(["serve", *argv]))
    args.pop("command")
    return args


def test_defaults_match_the_option_table() -> None:
    config = build_config(cli(), environ={})
    for option in OPTIONS:
        assert getattr(config, option.attr) == option.default, option.name
        assert getattr(Config(), option.attr) == option.default, option.name


def test_precedence(tmp_path: Path) -> None:
    toml = tmp_path / "ferryman.toml"
    toml.write_text('port = 1111\nheader-timeout = "5s"\n[serve]\nmax_ranges = 7\n')
    env = {"FERRYMAN_CONFIG": str(toml), "FERRYMAN_PORT": "2222", "FERRYMAN_SENDFILE": "off"}
    config = build_config(cli(), environ=env)
    assert (config.port, config.header_timeout, config.max_ranges) == (2222, 5.0, 7)
    assert config.sendfile is False
    config = build_config(cli("--port", "3333", "--config", str(toml)), environ=env)
    assert config.port == 3333


def test_switches_and_source() -> None:
    config = build_config(cli("/srv", "--follow-symlinks"), environ={})
    assert config.source == "/srv" and config.follow_symlinks is True
    assert build_config(cli(), environ={"FERRYMAN_SOURCE": "/data"}).source == "/data"


@pytest.mark.parametrize(
    ("argv", "message"),
    [(("--port", "70000"), "--port"), (("--loop", "tokio"), "--loop"),
     (("--max-connections", "0"), "--max-connections"), (("--sendfile", "maybe"), "--sendfile"),
     (("--open-files", "-1"), "--open-files"), (("--open-files-idle", "0"), "--open-files-idle")],
)  # fmt: skip
def test_bad_flags_name_the_flag(argv: tuple[str, ...], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        build_config(cli(*argv), environ={})


def test_unknown_toml_key_is_refused(tmp_path: Path) -> None:
    toml = tmp_path / "bad.toml"
    toml.write_text("prot = 1\n")
    with pytest.raises(ConfigError, match="prot"):
        build_config(cli("--config", str(toml)), environ={})


@pytest.mark.parametrize(
    "toml", ["small-body = 1.5", "sendfile = 1", "port = 80.5", "max-connections = true"]
)
def test_toml_values_of_the_wrong_type_are_refused(tmp_path: Path, toml: str) -> None:
    path = tmp_path / "typed.toml"
    path.write_text(toml + "\n")
    with pytest.raises(ConfigError):
        build_config(cli("--config", str(path)), environ={})


@pytest.mark.parametrize(
    ("values", "message"),
    [({"cache_dir": "/tmp/c"}, "--cache-dir needs a store"),
     ({"s3_endpoint": "http://x"}, "--s3-endpoint needs a store"),
     ({"source": "s3://b", "cache_encrypt": True}, "--cache-encrypt needs --cache-dir"),
     ({"source": "s3://b", "cache_dir": "/c", "cache_block_size": 4096}, "--cache-block-size"),
     ({"source": "s3://b", "s3_part_size": 1024**2}, "at least 5MiB")],
)  # fmt: skip
def test_settings_that_do_not_go_together(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_combinations(Config(**values))


def test_store_sources_get_their_own_state_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", "/var/state")
    one = Config(source="s3://media/videos")
    assert one.is_remote
    assert one.state_path.parent == Path("/var/state/ferryman")
    assert one.state_path.name.startswith("media_videos-")
    assert one.cache_key_path == one.state_path / "cache.key"
    assert Config(source="s3://media").state_path != one.state_path
    alike = {Config(source=s).state_path for s in ("s3://m/a_b", "s3://m/a/b", "s3://m/a b")}
    assert len(alike) == 3
    check_combinations(Config(source="s3://b", cache_dir="/c", cache_encrypt=True))  # fine


# -- precedence, as a property: flags > environment > TOML > default -------------------------

LAYERS = ("flag", "env", "toml")  # highest first
word = st.text("abcdefghijklmnopqrstuvwxyz0123456789._/", min_size=1, max_size=12)
VALUES: dict[str, st.SearchStrategy[str]] = {
    "a size": st.integers(0, 10**12).map(str) | st.integers(0, 4096).map(lambda n: f"{n}KiB"),
    "a duration": st.integers(0, 10**6).map(lambda n: f"{n}ms"),
    "a duration above zero": st.integers(1, 10**6).map(lambda n: f"{n}ms"),
    "a whole number, 0 or more": st.integers(0, 10**6).map(str),
    "a whole number, at least 1": st.integers(1, 10**6).map(str),
    "0 to 65535": st.integers(0, 65535).map(str),
    "1 to 1024, or `auto`": st.integers(1, 1024).map(str),
    "text": word,
    "a directory": word,
    "a file": word,
    "a URL": word,
    "`none`, or a list of `zstd`, `br`, `gzip`": st.sampled_from(
        ["none", "gzip", "zstd,br", "br, gzip", "zstd,br,gzip"]
    ),
}


host = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=12)
origin = st.builds("https://{}:{}".format, host, st.integers(1, 65535)) | st.just("*")
MANY: dict[str, st.SearchStrategy[str]] = {"origins (`scheme://host[:port]`) or `*`": origin}
GOOD_ITEM = {"origins (`scheme://host[:port]`) or `*`": "*"}  # where "none" is no such item


def values_for(option: Option, layer: str) -> st.SearchStrategy[object]:
    if option.kind.many:
        items = st.lists(MANY.get(option.kind.takes, word), min_size=1, max_size=3)
        return items.map(" ".join) if layer == "env" else items
    if option.switch and layer == "flag":
        return st.just(True)  # a bare flag
    if option.kind.takes == "on or off":
        return st.sampled_from(["on", "off", "true", "false", "1", "0"])
    if option.kind.takes in VALUES:
        return VALUES[option.kind.takes]
    return st.sampled_from(option.kind.takes.replace(" or ", ", ").replace("`", "").split(", "))


def toml_value(value: object) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value)  # a TOML basic string, for this alphabet


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_each_setting_comes_from_the_highest_layer_that_sets_it(data: st.DataObject) -> None:
    chosen = data.draw(st.lists(st.sampled_from(OPTIONS), unique=True, max_size=8))
    argv, environ, toml, expected = ["serve"], {}, {}, {}
    for option in chosen:
        given = {layer: data.draw(values_for(option, layer)) for layer in
                 data.draw(st.lists(st.sampled_from(LAYERS), unique=True))}  # fmt: skip
        winner = next((layer for layer in LAYERS if layer in given), None)
        if winner is not None:
            expected[option.attr] = option.kind.parse(given[winner])
        for layer, value in given.items():
            if layer == "flag" and option.positional:
                argv.append(str(value))
            elif layer == "flag" and option.kind.many:
                argv += [a for v in cast(Iterable[str], value) for a in (option.flag, v)]
            elif layer == "flag":
                argv += [option.flag] if option.switch else [option.flag, str(value)]
            elif layer == "env":
                environ[option.env] = str(value)
            else:
                key = data.draw(st.sampled_from([option.attr, option.name]))
                toml[key] = value
    in_serve = data.draw(st.booleans())  # the [serve] table or the top level
    lines = ["[serve]"] if in_serve else []
    lines += [f"{key} = {toml_value(value)}" for key, value in toml.items()]
    with tempfile.TemporaryDirectory() as where:
        path = Path(where) / "ferryman.toml"
        path.write_text("\n".join(lines) + "\n")
        named_by = data.draw(st.sampled_from(["flag", "env", "both"]))
        if named_by in ("flag", "both"):
            argv += ["--config", str(path)]
        if named_by in ("env", "both"):  # the flag names the file when both do
            environ["FERRYMAN_CONFIG"] = str(path) if named_by == "env" else "/nowhere.toml"
        args = vars(build_parser().parse_args(argv))
        args.pop("command")
        config = build_config(args, environ=environ)
    for option in OPTIONS:
        assert getattr(config, option.attr) == expected.get(option.attr, option.default)


def refuses(option: Option, text: str) -> bool:
    try:
        option.kind.parse(text)
    except ConfigError:
        return True
    return False


@given(st.sampled_from([o for o in OPTIONS if refuses(o, "§ not a value")]))
def test_a_bad_value_under_a_good_one_is_never_read(option: Option) -> None:
    good = {"on or off": "on", **GOOD_ITEM}.get(option.kind.takes, option.shown_default)
    config = build_config({option.attr: good}, environ={option.env: "§ not a value"})
    assert getattr(config, option.attr) == option.kind.parse(good)
    with pytest.raises(ConfigError, match=re.escape(option.flag)):
        build_config({}, environ={option.env: "§ not a value"})


# -- the command lines come from the same table ---------------------------------------------


def actions(argv: list[str]) -> dict[str, argparse.Action]:
    """The arguments of the (sub)command that `argv` names, by destination."""
    parser: argparse.ArgumentParser = build_parser()
    for word in argv:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[word]
    return {a.dest: a for a in parser._actions}


def test_serve_has_one_argument_per_option_named_as_the_table_says() -> None:
    serve = actions(["serve"])
    assert set(serve) == {"help", "config", *(o.attr for o in OPTIONS)}
    for option in OPTIONS:
        action = serve[option.attr]
        if not option.positional:
            assert action.option_strings == [option.flag]
        assert option.env in str(action.help)


@pytest.mark.parametrize(
    "command", [["audit"], ["repair"], ["catalog", "import"], ["catalog", "scan"],
                ["catalog", "show"], ["catalog", "migrate"]],
)  # fmt: skip
def test_the_store_flags_of_other_commands_are_serves(command: list[str]) -> None:
    """audit, repair and catalog read --replica, --state-dir and --s3-endpoint (and their
    environment variables) through build_config: the same flags as serve's."""
    serve, other = actions(["serve"]), actions(command)
    shared = [name for name in ("replica", "state_dir", "s3_endpoint") if name in other]
    assert "state_dir" in shared
    for name in shared:
        mine, servers = other[name], serve[name]
        assert (mine.option_strings, type(mine), mine.metavar) == (
            servers.option_strings, type(servers), servers.metavar)  # fmt: skip
        assert mine.help == argparse.SUPPRESS or OPTIONS_BY_ATTR[name].env in str(mine.help)
