"""Settings: parsing, precedence (default < TOML < environment < flags), and docs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferryman.cli import build_parser
from ferryman.config import (
    OPTIONS,
    Config,
    build_config,
    check_combinations,
    parse_duration,
    parse_size,
)
from ferryman.errors import ConfigError

DOCS = Path(__file__).parent.parent.parent / "docs" / "configuration.md"


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


def test_every_option_is_documented() -> None:
    text = DOCS.read_text()
    missing = [o.name for o in OPTIONS if f"`--{o.name}`" not in text or f"`{o.env}`" not in text]
    assert not missing, f"docs/configuration.md lacks {missing}"


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
def test_settings_that_do_not_go_together(values: dict, message: str) -> None:
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
