"""moto's S3 server for the audit benchmark, filled straight through its backend.

    python bench/audit_moto.py KEYS BUCKET=DIR [BUCKET=DIR ...]

Creates each bucket and puts into it DIR/key for every key listed in the
file KEYS (one a line), through moto's in-process backend: tens of
thousands of objects in seconds, where PUTs over HTTP take minutes. Then it
serves them on 127.0.0.1, prints the port, and serves until its standard
input closes. The benchmark starts it in a session of its own, pinned to the
CPU the tools do not use, and reads its CPU time from /proc.

The objects are what a PUT would have made (the same ETag, size and
listing); both tools list the same buckets.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

REGION = "us-east-1"


def fill(specs: list[str], keys_file: Path) -> None:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    keys = keys_file.read_text(encoding="utf-8").splitlines()
    for spec in specs:
        bucket, _, directory = spec.partition("=")
        backend.create_bucket(bucket, REGION)
        for key in keys:
            backend.put_object(bucket, key, (Path(directory) / key).read_bytes())


def serve(specs: list[str], keys_file: Path) -> None:
    from moto.server import ThreadedMotoServer

    fill(specs, keys_file)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    print(server.get_host_and_port()[1], flush=True)
    sys.stdin.read()
    server.stop()


class BenchMoto:
    """The server process: `url`, `pid` (its session), `stop()`."""

    def __init__(self, keys_file: Path, buckets: dict[str, Path], cpus: str) -> None:
        specs = [f"{name}={directory}" for name, directory in buckets.items()]
        self.proc = subprocess.Popen(
            ["taskset", "-c", cpus, sys.executable, __file__, str(keys_file), *specs],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        self.pid = self.proc.pid
        port = self._read_port(timeout=600)
        self.url = f"http://127.0.0.1:{port}"

    def _read_port(self, timeout: float) -> int:
        line: list[str] = []
        assert self.proc.stdout is not None
        stdout = self.proc.stdout
        reader = threading.Thread(target=lambda: line.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        if not line or not line[0].strip().isdigit():
            self.stop()
            raise RuntimeError(f"moto did not start (it printed {line!r})")
        return int(line[0])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


if __name__ == "__main__":
    serve(sys.argv[2:], Path(sys.argv[1]))
