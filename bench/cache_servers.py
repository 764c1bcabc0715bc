"""The servers of the cache benchmark: the upstream (moto), ferryman with and without
the cache, and nginx's proxy_cache in front of the same upstream.

Each is a servers.ServerSpec, so servers.running_server starts it pinned to
the server CPU in its own session and stops it by killing its process group.
moto itself runs unpinned (it is the origin, not under test) and is stopped
by the caller. Objects are stored public-read, so that nginx can fetch them
without signing, as ferryman fetches them signed.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from servers import Launch, ServerSpec, ferryman_argv, ferryman_local, nginx_launch
from settings import REPO_DIR, Settings
from testfiles import BIG_NAME, SMALL_NAME, TestFiles

sys.path.insert(0, str(REPO_DIR))
from tests.s3server import MotoServer, s3_env

PUBLIC = {"x-amz-acl": "public-read"}


@dataclass
class Upstream:
    moto: MotoServer
    bucket: str

    def put(self, key: str, data: bytes) -> None:
        self.moto.put_object(self.bucket, key, data, PUBLIC)


def start_upstream(files: TestFiles) -> Upstream:
    """moto with a bucket holding the run's 1 KiB and 100 MiB files."""
    moto = MotoServer()
    try:
        upstream = Upstream(moto, moto.create_bucket())
        for name in (SMALL_NAME, BIG_NAME):
            upstream.put(name, (files.root / name).read_bytes())
    except BaseException:
        moto.stop()
        raise
    return upstream


def local_spec() -> ServerSpec:
    return ServerSpec("local", "ferryman serving a local directory", ferryman_local)


def cache_spec(upstream: Upstream, *, encrypt: bool = False) -> ServerSpec:
    """ferryman serving the bucket through a fresh cache directory in its workdir."""

    def launch(workdir: Path, files: TestFiles, settings: Settings) -> Launch:
        argv = ferryman_argv(settings, f"s3://{upstream.bucket}")
        argv += ["--state-dir", str(workdir / "state"), "--cache-dir", str(workdir / "cache")]
        if encrypt:
            argv.append("--cache-encrypt")
        return Launch(argv, env=s3_env(upstream.moto.url))

    if encrypt:
        return ServerSpec("cache-encrypt", "ferryman, s3 through --cache-encrypt", launch)
    return ServerSpec("cache", "ferryman, s3 through --cache-dir", launch)


PROXY_CACHE_PATH = """\
    proxy_cache_path {dir}/cache levels=1:2 keys_zone=objects:10m max_size=8g inactive=1h;
"""

PROXY_LOCATION = """\
        location / {{
            proxy_pass {upstream}/{bucket}/;
            proxy_set_header Host {upstream_host};
            proxy_http_version 1.1;
            proxy_cache objects;
            proxy_cache_lock on;
            proxy_cache_valid 200 206 1h;
{extra}        }}
"""

SLICE = """\
            slice 1m;
            proxy_cache_key $uri$slice_range;
            proxy_set_header Range $slice_range;
"""


def nginx_cache_spec(upstream: Upstream, *, sliced: bool = False) -> ServerSpec:
    """nginx proxy_cache in front of moto; `sliced` adds the slice module (1 MiB slices)."""

    def launch(workdir: Path, files: TestFiles, settings: Settings) -> Launch:
        location = PROXY_LOCATION.format(
            upstream=upstream.moto.url,
            upstream_host=upstream.moto.url.removeprefix("http://"),
            bucket=upstream.bucket,
            extra=SLICE if sliced else "",
        )
        return nginx_launch(workdir, settings, location, PROXY_CACHE_PATH.format(dir=workdir))

    if sliced:
        return ServerSpec("nginx-slice", "nginx proxy_cache + slice 1m", launch)
    return ServerSpec("nginx-cache", "nginx proxy_cache", launch)
