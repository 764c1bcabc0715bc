"""Start and stop each server under test, pinned to the server CPU.

Every server gets a fresh working directory (config, log), is started in its
own session with `taskset`, and is ready when it answers an HTTP request. A
server that picks its own port (port 0) announces it with a line containing
`listening on http://HOST:PORT`; nginx and Caddy get a port we found free by
binding port 0 first.

The HTTPS servers (TLS_SERVERS: ferryman and nginx with a certificate, for
`bench.py --tls`) each get a fresh self-signed ECDSA P-256 certificate in
their working directory; clients do not verify it.
"""

from __future__ import annotations

import http.client
import os
import re
import resource
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from proctree import kill_tree
from settings import BENCH_DIR, HOST, Settings
from testfiles import LISTING_DIR, TestFiles

LISTENING = re.compile(r"listening on https?://([^\s/]+):(\d+)")
PEERS_DIR = BENCH_DIR / "peers"


class ServerStartError(Exception):
    """The server did not become ready; the message says why."""


@dataclass
class Launch:
    argv: list[str]
    port: int | None = None  # None: the server picks one and announces it
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ServerSpec:
    name: str
    description: str
    launch: Callable[[Path, TestFiles, Settings], Launch]
    tls: bool = False  # serves HTTPS (with a self-signed certificate)
    workloads: frozenset[str] | None = None  # the workloads it takes part in; None: all
    # How it answers the archive-member workloads (bench/members.py): "archive" (from
    # inside the tar), "plain" (the member's bytes as a plain file: the stand-in for
    # servers that serve no tar members), "" (it cannot: not applicable).
    members: str = ""

    def takes_part(self, workload: str) -> bool:
        return self.workloads is None or workload in self.workloads


@dataclass
class Server:
    spec: ServerSpec
    proc: subprocess.Popen
    port: int
    log_path: Path

    @property
    def sid(self) -> int:
        return self.proc.pid

    @property
    def tls(self) -> bool:
        return self.spec.tls

    def url(self, path: str) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{HOST}:{self.port}{path}"

    def alive(self) -> bool:
        return self.proc.poll() is None


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def ferryman_argv(settings: Settings, source: str) -> list[str]:
    """`ferryman serve SOURCE` on a free port, with the run's extra flags."""
    if not Path(settings.ferryman).exists():
        raise ServerStartError(f"{settings.ferryman} does not exist")
    argv = [settings.ferryman, "serve", source, "--host", HOST, "--port", "0"]
    return [*argv, *settings.ferryman_args]


def ferryman_local(workdir: Path, files: TestFiles, settings: Settings) -> Launch:
    """ferryman serving the run's test files from their local directory."""
    return Launch(ferryman_argv(settings, str(files.root)))


def _ferryman_pure(workdir: Path, files: TestFiles, settings: Settings) -> Launch:
    """The same, its request path as pure Python (FERRYMAN_PURE=1): what `pip install`
    gives, which builds no extension modules."""
    return Launch(ferryman_argv(settings, str(files.root)), env={"FERRYMAN_PURE": "1"})


def self_signed(workdir: Path) -> tuple[Path, Path]:
    """A certificate for HOST and its key (ECDSA P-256, as certbot issues by default)."""
    cert, key = workdir / "cert.pem", workdir / "key.pem"
    argv = [
        "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-days", "2", "-subj", f"/CN={HOST}", "-addext", f"subjectAltName=IP:{HOST}",
        "-keyout", str(key), "-out", str(cert),
    ]  # fmt: skip
    try:
        subprocess.run(argv, capture_output=True, check=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        raise ServerStartError(f"cannot make a certificate with openssl: {exc}") from exc
    return cert, key


def _ferryman_https(workdir: Path, files: TestFiles, settings: Settings) -> Launch:
    cert, key = self_signed(workdir)
    argv = ferryman_argv(settings, str(files.root))
    return Launch([*argv, "--tls-cert", str(cert), "--tls-key", str(key)])


# One config for every nginx of the benchmarks: the file server and the proxy
# caches fill the two slots, everything else is the same.
NGINX_CONF = """\
daemon off;
master_process on;
worker_processes 1;
user root;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
worker_rlimit_nofile {nofile};
events {{
    worker_connections {connections};
}}
http {{
    access_log off;
    sendfile on;
    default_type application/octet-stream;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
{http_extra}    server {{
        listen {host}:{port}{listen_flags};
{server_body}    }}
}}
"""


def _nofile_limit() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def nginx_launch(
    workdir: Path, settings: Settings, server_body: str, http_extra: str = "",
    listen_flags: str = "",
) -> Launch:  # fmt: skip
    """nginx on a free port with NGINX_CONF written into `workdir`; `server_body` and
    `http_extra` are whole lines (indented, newline-terminated) for the two slots;
    `listen_flags` follow the address on the listen line (" ssl")."""
    port = free_port()
    nofile = _nofile_limit()
    conf = workdir / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(
            dir=workdir,
            host=HOST,
            port=port,
            nofile=nofile,
            # Room for this run's connections, no more: nginx preallocates
            # per-connection structures, and the idle workload measures RSS.
            connections=min(
                nofile - 100, max(settings.idle_connections, settings.slow_readers) + 1024
            ),
            http_extra=http_extra,
            server_body=server_body,
            listen_flags=listen_flags,
        )
    )
    argv = ["nginx", "-p", str(workdir), "-c", str(conf), "-e", str(workdir / "error.log")]
    return Launch(argv, port)


# The gzip workload's JSON: coded on the fly at ferryman's gzip level, or sent from its
# precompressed sidecar. Only JSON is listed, so no other workload's file is coded.
NGINX_GZIP = """\
        types { application/json json; }
        gzip on;
        gzip_types application/json;
        gzip_comp_level 6;
        gzip_min_length 1024;
        gzip_vary on;
        gzip_static on;
"""


# nginx lists the listing workload's directory, as ferryman lists every directory.
NGINX_AUTOINDEX = f"        location /{LISTING_DIR}/ {{ autoindex on; }}\n"


def _nginx(workdir: Path, files: TestFiles, settings: Settings) -> Launch:
    body = f"        root {files.root};\n" + NGINX_GZIP + NGINX_AUTOINDEX
    return nginx_launch(workdir, settings, body)


def _nginx_https(workdir: Path, files: TestFiles, settings: Settings) -> Launch:
    """nginx over TLS: `sendfile on` stays, and nginx, like ferryman, writes through
    OpenSSL instead (it would sendfile only with kTLS: `ssl_conf_command Options KTLS`)."""
    cert, key = self_signed(workdir)
    body = (
        f"        root {files.root};\n"
        f"        ssl_certificate {cert};\n"
        f"        ssl_certificate_key {key};\n"
        "        ssl_protocols TLSv1.2 TLSv1.3;\n" + NGINX_AUTOINDEX
    )
    return nginx_launch(workdir, settings, body, listen_flags=" ssl")


CADDYFILE = """\
{{
    admin off
    auto_https off
    storage file_system {dir}/data
}}
http://{host}:{port} {{
    bind {host}
    root * {root}
    file_server
}}
"""


def _caddy(workdir: Path, files: TestFiles, settings: Settings) -> Launch:
    port = free_port()
    caddyfile = workdir / "Caddyfile"
    caddyfile.write_text(CADDYFILE.format(dir=workdir, host=HOST, port=port, root=files.root))
    env = {"HOME": str(workdir), "XDG_CONFIG_HOME": str(workdir), "XDG_DATA_HOME": str(workdir)}
    argv = ["caddy", "run", "--config", str(caddyfile), "--adapter", "caddyfile"]
    return Launch(argv, port, env)


def _peer(script: str) -> Callable[[Path, TestFiles, Settings], Launch]:
    def launch(workdir: Path, files: TestFiles, settings: Settings) -> Launch:
        argv = [sys.executable, str(PEERS_DIR / script), "--root", str(files.root), "--host", HOST]
        return Launch(argv)

    return launch


SERVERS = [
    ServerSpec("ferryman", "ferryman serve, defaults", ferryman_local, members="archive"),
    ServerSpec(
        "ferryman-pure",
        "ferryman serve, defaults, FERRYMAN_PURE=1 (pip install: no compiled request path)",
        _ferryman_pure,
        members="archive",
    ),
    ServerSpec("nginx", "nginx, 1 worker, sendfile on, access log off", _nginx, members="plain"),
    ServerSpec("caddy", "Caddy file_server", _caddy),
    ServerSpec("aiohttp", "aiohttp static files on uvloop", _peer("aiohttp_peer.py")),
    ServerSpec(
        "starlette", "Starlette StaticFiles, uvicorn+uvloop+httptools", _peer("starlette_peer.py")
    ),
    ServerSpec("tornado", "Tornado StaticFileHandler", _peer("tornado_peer.py")),
    ServerSpec("http.server", "python http.server, threaded", _peer("httpserver_peer.py")),
    # The limit: what a Python server can do at most on this machine. It answers
    # one fixed 1 KiB answer to everything, so it takes part in `small` only.
    ServerSpec(
        "probe",
        "limit probe: bare uvloop + httptools, one fixed 1 KiB answer",
        _peer("probe_peer.py"),
        workloads=frozenset({"small"}),
    ),
]

# Not run unless named (`--servers`, or `bench.py --tls`): only the wrk workloads speak HTTPS.
TLS_SERVERS = [
    ServerSpec(
        "ferryman-https",
        "ferryman serve --tls-cert, defaults",
        _ferryman_https,
        tls=True,
        members="archive",
    ),
    ServerSpec(
        "nginx-https",
        "nginx, 1 worker, ssl, sendfile on, access log off",
        _nginx_https,
        tls=True,
        members="plain",
    ),
]


def _log_tail(path: Path, lines: int = 3, chars: int = 400) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    tail = " | ".join(text.strip().splitlines()[-lines:])[-chars:]
    return tail or "(no output)"


def _announced_port(log_path: Path) -> int | None:
    try:
        match = LISTENING.search(log_path.read_text(errors="replace"))
    except OSError:
        return None
    return int(match.group(2)) if match else None


def http_connection(port: int, tls: bool, timeout: float) -> http.client.HTTPConnection:
    """A client connection to HOST:port; over TLS, trusting any certificate."""
    if not tls:
        return http.client.HTTPConnection(HOST, port, timeout=timeout)
    return http.client.HTTPSConnection(
        HOST, port, timeout=timeout, context=ssl._create_unverified_context()
    )


def _answers_http(port: int, probe_path: str, tls: bool) -> bool:
    conn = http_connection(port, tls, 2)
    try:
        conn.request("GET", probe_path)
        conn.getresponse().read()
        return True
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def _wait_ready(server: Server, launch: Launch, files: TestFiles, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    port = launch.port
    while time.monotonic() < deadline:
        if not server.alive():
            raise ServerStartError(
                f"exited with status {server.proc.returncode}: {_log_tail(server.log_path)}"
            )
        if port is None:
            port = _announced_port(server.log_path)
        if port is not None and _answers_http(port, files.small_path, server.tls):
            server.port = port
            return
        time.sleep(0.05)
    what = "no 'listening on' line" if port is None else f"no HTTP answer on port {port}"
    raise ServerStartError(
        f"not ready after {timeout:.0f} s ({what}): {_log_tail(server.log_path)}"
    )


def start_server(spec: ServerSpec, files: TestFiles, workdir: Path, settings: Settings) -> Server:
    """Start `spec` pinned to the server CPU and wait until it answers HTTP."""
    workdir.mkdir(parents=True, exist_ok=True)
    launch = spec.launch(workdir, files, settings)
    log_path = workdir / "server.log"
    argv = ["taskset", "-c", settings.server_cpu, *launch.argv]
    with open(log_path, "wb") as log:
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=workdir,
                env={**os.environ, **launch.env},
                start_new_session=True,
            )
        except OSError as exc:
            raise ServerStartError(f"cannot run {argv[3]}: {exc}") from exc
    server = Server(spec, proc, launch.port or 0, log_path)
    try:
        _wait_ready(server, launch, files, settings.startup_timeout)
    except BaseException:
        kill_tree(proc)
        raise
    return server


@contextmanager
def running_server(
    spec: ServerSpec, files: TestFiles, workdir: Path, settings: Settings
) -> Iterator[Server]:
    server = start_server(spec, files, workdir, settings)
    try:
        yield server
    finally:
        kill_tree(server.proc)
