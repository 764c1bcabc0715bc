"""nginx in front of ferryman nodes, configured by docs/fleet/nginx-ferryman.conf as written.

`site_conf` is the documented site file with only its node addresses and its
listen line changed; `Balancer` runs nginx with it on a free port. The fleet
example's test and the fleet benchmark (bench/fleet_bench.py) both use them,
so what they measure and check is what the docs tell users to run.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

FLEET_DOCS = Path(__file__).resolve().parents[1] / "docs" / "fleet"
SITE = FLEET_DOCS / "nginx-ferryman.conf"
DOCUMENTED_NODES = ("10.0.0.11:8000", "10.0.0.12:8000")
DOCUMENTED_LISTEN = "listen 80;"

MAIN_CONF = """\
daemon off;
master_process on;
worker_processes 1;
user root;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    include {dir}/ferryman.conf;
}}
"""


def site_conf(nodes: Sequence[str], port: int) -> str:
    """The documented site file for `nodes` ("host:port", one or two), on 127.0.0.1:`port`.

    With one node the second documented upstream line is left out."""
    lines = SITE.read_text().splitlines(keepends=True)
    if DOCUMENTED_LISTEN not in "".join(lines) or not 1 <= len(nodes) <= 2:
        raise ValueError("the documented site file changed, or not one or two nodes")
    text = ""
    for line in lines:
        documented = next((d for d in DOCUMENTED_NODES if d in line), None)
        if documented is not None:
            index = DOCUMENTED_NODES.index(documented)
            if index >= len(nodes):
                continue
            line = line.replace(documented, nodes[index])
        text += line.replace(DOCUMENTED_LISTEN, f"listen 127.0.0.1:{port};")
    return text


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Balancer:
    """nginx (its own session, for CPU accounting) in `workdir`, in front of `nodes`."""

    def __init__(self, workdir: Path, nodes: Sequence[str]) -> None:
        self.port = free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "ferryman.conf").write_text(site_conf(nodes, self.port))
        conf = workdir / "nginx.conf"
        conf.write_text(MAIN_CONF.format(dir=workdir))
        self.workdir = workdir
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        self.proc = subprocess.Popen(
            [binary, "-p", str(workdir), "-c", str(conf), "-e", str(workdir / "error.log")],
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 15
        while not self.listening():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                log = workdir / "error.log"
                said = log.read_text() if log.exists() else ""
                raise RuntimeError(f"nginx did not start: {said}")
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def listening(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(timeout=15)
