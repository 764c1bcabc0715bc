"""moto's S3 server as a real process on 127.0.0.1 port 0, for tests and benchmarks.

`MotoServer()` starts `python -m tests.s3server` in its own process (so its
CPU and its threads are not the test's), waits for the port it prints, then
for an HTTP answer, and is ready. `stop()` ends it (closing its stdin ends it
too, so an interrupted test run leaves no server behind).

With `auth=True` the server checks credentials on every request (moto's
INITIAL_NO_AUTH_ACTION_COUNT=0): only keys moto's IAM knows are accepted,
so any key gets 403. That is how tests see a real AccessDenied.

Credentials: moto accepts any key when auth is off; `s3_env(url)` is the
environment a ferryman subprocess (or the store in-process) needs.
"""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ACCESS_KEY = "ferrymantest"
SECRET_KEY = "ferrymantest-secret"
REGION = "us-east-1"


def s3_env(endpoint: str) -> dict[str, str]:
    """Environment for anything that talks to the moto server at `endpoint`."""
    return {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "FERRYMAN_S3_ENDPOINT": endpoint,
        # Never let a credential chain look for an instance role on the network.
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def sign(method: str, url: str, body: bytes, headers: dict[str, str]) -> dict[str, str]:
    """`headers` plus an AWS SigV4 signature with the test keys."""
    from botocore.auth import S3SigV4Auth  # type: ignore[import-untyped]
    from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]
    from botocore.credentials import Credentials  # type: ignore[import-untyped]

    request = AWSRequest(method=method, url=url, data=body, headers=headers)
    S3SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", REGION).add_auth(request)
    return dict(request.headers.items())


class MotoServer:
    """One moto S3 server process; `url` is `http://127.0.0.1:PORT`."""

    def __init__(self, *, auth: bool = False, timeout: float = 30.0) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        if auth:
            env["INITIAL_NO_AUTH_ACTION_COUNT"] = "0"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.s3server"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=REPO,
            env=env,
        )
        port = self._read_port(timeout)
        self.host = "127.0.0.1"
        self.port: int = port
        self.url: str = f"http://{self.host}:{port}"
        self._wait_answering(timeout)

    def _read_port(self, timeout: float) -> int:
        # readline() has no timeout: read it in a thread and give up at the deadline.
        line: list[str] = []
        stdout = self.proc.stdout
        assert stdout is not None
        reader = threading.Thread(target=lambda: line.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        if not line or not line[0].strip().isdigit():
            self.stop()
            raise RuntimeError(f"moto server did not start (got {line!r})")
        return int(line[0])

    def _wait_answering(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=2)
                conn.request("GET", "/moto-api/")
                conn.getresponse().read()
                conn.close()
                return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError("moto server does not answer") from None
                time.sleep(0.05)

    def create_bucket(self, name: str | None = None) -> str:
        """A new empty bucket (a fresh DNS-valid name unless given); returns its name."""
        name = name or f"ferryman-{uuid.uuid4().hex[:20]}"
        status, body = self.request("PUT", f"/{name}")
        if status != 200:
            raise RuntimeError(f"creating bucket {name}: {status} {body[:200]!r}")
        return name

    def put_object(
        self, bucket: str, key: str, data: bytes, headers: dict[str, str] | None = None
    ) -> None:
        """Store an object without going through ferryman (test setup)."""
        path = f"/{bucket}/{urllib.parse.quote(key)}"
        status, body = self.request("PUT", path, data, headers)
        if status != 200:
            raise RuntimeError(f"putting {key}: {status} {body[:200]!r}")

    def head_object(
        self, bucket: str, key: str, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str]]:
        """Status and (lower-cased) response headers of a signed HEAD."""
        path = f"/{bucket}/{urllib.parse.quote(key)}"
        signed = sign("HEAD", self.url + path, b"", headers or {})
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            conn.request("HEAD", path, headers=signed)
            resp = conn.getresponse()
            resp.read()
            return resp.status, {name.lower(): value for name, value in resp.getheaders()}
        finally:
            conn.close()

    def get_object(self, bucket: str, key: str) -> tuple[int, bytes]:
        return self.request("GET", f"/{bucket}/{urllib.parse.quote(key)}")

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        """One request signed with the test keys; status and body.

        Signed, because moto takes an unsigned request for an anonymous one
        and then refuses it on a private object (an overwrite, for example).
        """
        signed = sign(method, self.url + path, body or b"", headers or {})
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=signed)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

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

    def __enter__(self) -> MotoServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _serve() -> None:
    """The server process: print the port, serve until stdin closes or SIGTERM."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    print(server.get_host_and_port()[1], flush=True)
    sys.stdin.read()
    server.stop()


if __name__ == "__main__":
    _serve()
