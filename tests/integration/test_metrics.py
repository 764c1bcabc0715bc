"""Health, readiness, metrics and request ids against real servers.

Scrapes go to /-/metrics from loopback (the token rule for other clients is
unit-tested in tests/unit/test_reserved.py: a test here only talks to loopback).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.rawhttp import RawResponse
from tests.s3server import MotoServer, s3_env
from tests.serverproc import ServerProcess, Servers, wait_until

READY = re.compile(r"ferryman\[(\d+)\] INFO worker (\d+) ready")
HOOKS = {"FERRYMAN_TEST_HOOKS": "1", "FERRYMAN_TEST_RAISE_ON": "/boom"}
DASHBOARD = Path(__file__).parents[2] / "docs" / "grafana-ferryman.json"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(srv: ServerProcess) -> Samples:
    answer = srv.get("/-/metrics")
    assert answer.status == 200, answer.body[:300]
    assert (answer.header("content-type") or "").startswith("text/plain; version=0.0.4")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(answer.body.decode())
        for s in family.samples
    }


def requests_total(samples: Samples, method: str, code: int) -> float:
    return samples.get(("ferryman_requests_total", (("code", str(code)), ("method", method))), 0.0)


def workers(srv: ServerProcess) -> list[int]:
    """Pids of the workers that reported ready, in order."""
    return [int(m.group(1)) for m in map(READY.search, list(srv.lines)) if m]


def per_process_404s(run: Path, pid: int, scratch: Path) -> float:
    """The 404s one process wrote: its own files alone, added up as a scrape would."""
    from ferryman.metrics.scrape import render

    alone = scratch / str(pid)
    alone.mkdir(parents=True, exist_ok=True)
    for path in run.glob(f"*_{pid}.db"):
        shutil.copy(path, alone / path.name)
    text = render(str(alone), None).decode()
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "ferryman_requests_total" and s.labels == {"code": "404", "method": "GET"}
    )


def get_many(srv: ServerProcess, target: str, n: int) -> None:
    """`n` GETs on `n` connections open at once, so every worker accepts some."""
    conns = [srv.connect() for _ in range(n)]
    try:
        for conn in conns:
            assert conn.get(target).status == 404
    finally:
        for conn in conns:
            conn.close()


def test_one_scrape_adds_up_every_worker_and_survives_a_killed_one(
    ferryman: Servers, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    srv = ferryman("--workers", "2", "--state-dir", str(state))
    assert wait_until(lambda: len(workers(srv)) == 2, 10), srv.log_text()
    run = state / "metrics" / str(srv.proc.pid)
    sent = 0
    first, second = workers(srv)
    # Until both workers answered some: connections are spread by the kernel.
    for _ in range(20):
        get_many(srv, "/no-such-file", 40)
        sent += 40
        time.sleep(1.2)  # each worker writes its counts once a second
        if all(per_process_404s(run, pid, tmp_path) > 0 for pid in (first, second)):
            break
    assert wait_until(lambda: requests_total(scrape(srv), "GET", 404) == sent, 5)
    shares = [per_process_404s(run, pid, tmp_path / "again") for pid in (first, second)]
    assert all(share > 0 for share in shares) and sum(shares) == sent, shares
    before = scrape(srv)
    assert before[("ferryman_worker_restarts_total", ())] == 0
    assert before[("ferryman_response_bytes_total", ())] > 0
    assert before[("ferryman_request_duration_seconds_count", ())] >= sent

    os.kill(first, signal.SIGKILL)
    assert wait_until(lambda: len(workers(srv)) == 3, 10), srv.log_text()
    after = scrape(srv)
    assert requests_total(after, "GET", 404) == sent  # the dead worker's counts stay
    assert after[("ferryman_worker_restarts_total", ())] == 1
    for name, value in before.items():
        if name[0].endswith(("_total", "_count", "_bucket")):
            assert after.get(name, 0) >= value, name  # no counter goes backwards
    get_many(srv, "/no-such-file", 10)
    assert wait_until(lambda: requests_total(scrape(srv), "GET", 404) == sent + 10, 5)
    assert not list(run.glob(f"gauge_livesum_{first}.db"))  # its gauges no longer count
    assert srv.stop() == 0
    assert not run.exists()  # a run removes its directory when it stops


def test_open_connections_are_a_gauge(ferryman: Servers, tmp_path: Path) -> None:
    srv = ferryman("--state-dir", str(tmp_path))
    conns = [srv.connect() for _ in range(7)]
    try:
        for conn in conns:
            assert conn.get("/hello.txt").status == 200

        def gauge() -> float:
            return scrape(srv)[("ferryman_connections_open", ())]

        assert wait_until(lambda: gauge() >= 7, 5)  # and the scraping connection
    finally:
        for conn in conns:
            conn.close()
    assert wait_until(lambda: gauge() <= 1, 5)


def test_every_answer_carries_the_request_id_of_its_log_line(
    ferryman: Servers, tmp_path: Path
) -> None:
    log = tmp_path / "access.log"
    srv = ferryman("--state-dir", str(tmp_path / "state"), "--access-log", str(log),
                   "--access-log-format", "json", env=HOOKS)  # fmt: skip
    answers: list[tuple[str, RawResponse]] = []
    with srv.connect() as conn:
        for target, headers in [
            ("/hello.txt", {}),
            ("/no-such-file", {}),
            ("/boom", {}),
            ("/-/health", {}),
            ("/hello.txt", {"X-Request-Id": "from-the-proxy.42"}),
            ("/hello.txt", {"X-Request-Id": "two words"}),  # not a token: replaced
            ("/hello.txt", {"X-Request-Id": "x" * 65}),  # too long: replaced
        ]:
            answers.append((target, conn.get(target, headers)))
    assert [a.status for _, a in answers] == [200, 404, 500, 200, 200, 200, 200]
    ids = [a.header("x-request-id") or "" for _, a in answers]
    assert ids[4] == "from-the-proxy.42"
    assert all(re.fullmatch(r"[0-9a-f]{16}", i) for k, i in enumerate(ids) if k != 4), ids
    assert len(set(ids)) == len(ids)
    assert f"request {ids[2]} failed" in answers[2][1].body.decode()  # the 500's detail
    assert wait_until(lambda: f"request {ids[2]} failed" in srv.log_text(), 5)
    assert wait_until(lambda: log.exists() and len(log.read_text().splitlines()) >= 7, 5)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(e["request_id"], e["target"], e["status"]) for e in lines] == [
        (rid, target, answer.status) for rid, (target, answer) in zip(ids, answers, strict=True)
    ]


def test_ready_says_why_not_while_source_is_gone(ferryman: Servers, tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "a.txt").write_bytes(b"a")
    srv = ferryman("--state-dir", str(tmp_path / "state"), root=source)
    ready = srv.get("/-/ready")
    assert ready.status == 200 and json.loads(ready.body) == {"ready": True, "reasons": []}
    source.rename(tmp_path / "away")
    time.sleep(1.1)  # the last answer is kept a second

    def answer() -> RawResponse:
        return srv.get("/-/ready", {"Accept": "text/html"})

    assert wait_until(lambda: answer().status == 503, 5)
    down = answer()
    assert down.header("retry-after") == "2"
    assert down.header("content-type") == "application/json"
    body = json.loads(down.body)
    assert body["ready"] is False
    assert body["reasons"] == [f"store: SOURCE {source}: No such file or directory"]
    health = srv.get("/-/health")  # alive all the same: its loop answers
    assert health.status == 200 and json.loads(health.body) == {"alive": True}
    (tmp_path / "away").rename(source)
    assert wait_until(lambda: answer().status == 200, 5)


def test_ready_times_out_on_a_store_that_stopped_answering(
    ferryman: Servers, tmp_path: Path
) -> None:
    moto = MotoServer()
    try:
        bucket = moto.create_bucket()
        moto.put_object(bucket, "a.txt", b"a")
        srv = ferryman("--state-dir", str(tmp_path), "--ready-timeout", "0.5s",
                       root=f"s3://{bucket}", env=s3_env(moto.url))  # fmt: skip
        assert srv.get("/-/ready").status == 200
        assert srv.get("/a.txt").body == b"a"
        moto.proc.send_signal(signal.SIGSTOP)
        try:
            time.sleep(1.1)
            down = srv.get("/-/ready")
            assert down.status == 503
            assert json.loads(down.body)["reasons"] == ["store: no answer within 0.5s"]
        finally:
            moto.proc.send_signal(signal.SIGCONT)
        assert wait_until(lambda: srv.get("/-/ready").status == 200, 10)
        samples = scrape(srv)
        ok = ("ferryman_store_requests_total", (("operation", "head_object"), ("outcome", "ok")))
        assert wait_until(lambda: scrape(srv).get(ok, 0) >= 1, 5), samples
    finally:
        moto.stop()


def test_the_reserved_prefix_shadows_a_dash_in_source(ferryman: Servers, tmp_path: Path) -> None:
    source = tmp_path / "source"
    (source / "-").mkdir(parents=True)
    (source / "-" / "health").write_bytes(b"a file, never served")
    (source / "-" / "x.txt").write_bytes(b"a file, never served")
    srv = ferryman("--state-dir", str(tmp_path / "state"), root=source)
    assert srv.get("/-/health").body == b'{"alive": true}\n'
    for target in ("/-/x.txt", "/%2D/x.txt", "/-", "/-/", "/-%2Fx.txt", "/-/metrics/x"):
        answer = srv.get(target)
        assert answer.status == 404, target
        assert b"never served" not in answer.body
        assert "/-/health" in json.loads(answer.body)["detail"]
    (source / "sub" / "-").mkdir(parents=True)  # only the top-level `-` is reserved
    (source / "sub" / "-" / "y.txt").write_bytes(b"y")
    assert srv.get("/sub/-/y.txt").body == b"y"
    top = json.loads(srv.get("/", {"Accept": "application/json"}).body)
    assert [e["name"] for e in top["entries"]] == ["sub"]  # what cannot be served is not listed
    sub = json.loads(srv.get("/sub/", {"Accept": "application/json"}).body)
    assert [e["name"] for e in sub["entries"]] == ["-"]
    refused = srv.request("PUT", "/-/health", body=b"x")
    assert refused.status == 405 and refused.header("allow") == "GET, HEAD"
    assert srv.request("HEAD", "/-/ready").status == 200


def test_metrics_off(ferryman: Servers, tmp_path: Path) -> None:
    srv = ferryman("--state-dir", str(tmp_path), "--metrics", "off")
    assert srv.get("/-/metrics").status == 404
    assert srv.get("/-/health").status == 200
    assert not (tmp_path / "metrics").exists()


def metric_names(samples: Samples) -> set[str]:
    return {re.sub(r"_(bucket|count|sum)$", "", name) for name, _ in samples}


def test_the_grafana_dashboard_queries_only_what_ferryman_exports(
    ferryman: Servers, tmp_path: Path, moto_server: MotoServer
) -> None:
    """A bucket with the block cache and a catalog holding an audit: every family shows."""
    dashboard = json.loads(
        (Path(__file__).parents[2] / "docs" / "grafana-ferryman.json").read_text()
    )
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    queried = {re.sub(r"_(bucket|count|sum)$", "", n) for e in exprs
               for n in re.findall(r"ferryman_[a-z_]+", e)}  # fmt: skip
    bucket = moto_server.create_bucket()
    moto_server.put_object(bucket, "a.txt", b"abc")
    env = s3_env(moto_server.url)
    state = tmp_path / "state"
    inventory = tmp_path / "inventory.txt"
    inventory.write_text("0" * 64 + "  missing.txt\n")
    done = subprocess.run(
        [sys.executable, "-m", "ferryman.cli", "audit", f"s3://{bucket}", "--inventory",
         str(inventory), "--state-dir", str(state)],
        capture_output=True, text=True, timeout=120, env={**os.environ, **env},
    )  # fmt: skip
    assert done.returncode in (0, 1), done.stderr
    srv = ferryman("--state-dir", str(state), "--cache-dir", str(tmp_path / "cache"),
                   root=f"s3://{bucket}", env=env)  # fmt: skip
    assert srv.get("/a.txt").body == b"abc"
    assert srv.get("/a.txt").body == b"abc"
    expected: Callable[[], bool] = lambda: queried <= metric_names(scrape(srv))  # noqa: E731
    assert wait_until(expected, 5), queried - metric_names(scrape(srv))
    samples = scrape(srv)
    assert samples[("ferryman_audit_findings", (("kind", "missing"),))] == 1
    fill = ("ferryman_cache_fill_bytes_total", ())
    assert wait_until(lambda: scrape(srv).get(fill) == 3, 5), scrape(srv).get(fill)


def test_ready_names_a_cache_whose_directory_is_gone(
    ferryman: Servers, tmp_path: Path, moto_server: MotoServer
) -> None:
    bucket = moto_server.create_bucket()
    moto_server.put_object(bucket, "a.txt", b"abc")
    cache = tmp_path / "cache"
    srv = ferryman("--state-dir", str(tmp_path / "state"), "--cache-dir", str(cache),
                   "--ready-timeout", "1s", root=f"s3://{bucket}",
                   env=s3_env(moto_server.url))  # fmt: skip
    ready = srv.get("/-/ready")
    assert ready.status == 200, ready.body
    shutil.rmtree(cache)  # the disk went away: the filler cannot be asked or cannot fill
    time.sleep(1.1)

    def reasons() -> list[str]:
        answer = srv.get("/-/ready")
        return [] if answer.status == 200 else list(json.loads(answer.body)["reasons"])

    assert wait_until(lambda: any(r.startswith("cache: ") for r in reasons()), 10)
    assert all(r.startswith("cache: ") for r in reasons()), reasons()  # the store is fine
    assert srv.get("/a.txt").body == b"abc"  # reads go on, from the store


def test_a_private_server_answers_probes_without_credentials(
    ferryman: Servers, tmp_path: Path
) -> None:
    key = tmp_path / "signing-key"
    key.write_bytes(b"k" * 32)
    srv = ferryman("--private", "--signing-key", str(key), "--state-dir", str(tmp_path / "s"))
    assert srv.get("/hello.txt").status == 401  # files need a signature or a token
    assert srv.get("/-/health").status == 200
    assert srv.get("/-/ready").status == 200
    assert srv.get("/-/metrics").status == 200  # loopback
    assert srv.get("/-/nothing").status == 404  # not 401: the prefix is the server's
