"""Settings that are valid alone but not together."""

from __future__ import annotations

from ferryman.config.options import Config
from ferryman.errors import ConfigError

MIN_BLOCK, MAX_BLOCK = 64 * 1024, 64 * 1024**2
MIN_PART = 5 * 1024**2  # S3 refuses smaller parts (but the last)


def check_combinations(config: Config) -> None:
    """A ConfigError says which settings do not go together.

    The first step of the boot (ferryman/boot.py), which checks the files,
    directories and store the settings name.
    """
    if not config.is_remote:
        if config.cache_dir:
            raise ConfigError("--cache-dir needs a store as SOURCE (s3://bucket[/prefix])")
        if config.s3_endpoint and not any(r.startswith("s3://") for r in config.replica):
            raise ConfigError(
                "--s3-endpoint needs a store as SOURCE or --replica (s3://bucket[/prefix])"
            )
    if config.catalog is not None:
        from ferryman.catalog.location import parse_catalog_url

        parse_catalog_url(config.catalog)  # a ConfigError says what a catalog URL is
    if config.replica and not config.allow_write:
        raise ConfigError("--replica needs --allow-write: replicas receive writes")
    if config.cache_encrypt and not config.cache_dir:
        raise ConfigError("--cache-encrypt needs --cache-dir")
    if not MIN_BLOCK <= config.cache_block_size <= MAX_BLOCK:
        raise ConfigError(f"--cache-block-size: use {MIN_BLOCK // 1024}KiB to {MAX_BLOCK >> 20}MiB")
    if config.s3_part_size < MIN_PART:
        raise ConfigError("--s3-part-size: S3 needs parts of at least 5MiB")
    if config.tls_cert is not None and config.tls_key is None:
        raise ConfigError("--tls-cert needs --tls-key: TLS takes a certificate and its key")
    if config.tls_key is not None and config.tls_cert is None:
        raise ConfigError("--tls-key needs --tls-cert: TLS takes a certificate and its key")
    if config.cors_credentials and not any(o != "*" for o in config.cors_origin):
        raise ConfigError(
            "--cors-credentials needs --cors-origin naming an origin: credentials are never "
            "allowed to every origin ('*')"
        )
