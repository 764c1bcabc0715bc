"""obstore and aiobotocore side by side against a local moto S3 server.

    .venv/bin/pip install obstore     # once: ferryman itself does not depend on it
    .venv/bin/python bench/s3_clients.py [--rounds 3] [--big-mib 256] [--json FILE]

moto runs in its own process (tests/s3server.py), so the CPU seconds counted
here (time.process_time: every thread of this process, obstore's Rust
runtime included) are the client's alone. Each figure is the median over
`--rounds` rounds; the libraries alternate within a round so that a slow
moment on the machine hurts both. What is measured, for each library:

- HEAD: latency (median and p95 of 200 sequential requests) and CPU per request;
- ranged GET of 1 MiB (of a 4 MiB object): latency (median and p95 of 50) and CPU per request;
- a streamed GET of a 256 MiB object: throughput, CPU per GiB, chunk sizes;
- a 64 MiB upload in 16 MiB parts (4 at a time) with a SHA-256 checksum on
  each part: wall time and CPU.

moto is pure Python and is the ceiling for throughput: compare the two
libraries with each other, not with a real S3.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.s3server import MotoServer, s3_env

MIB = 1024 * 1024
HEADS = 200
RANGED_GETS = 50
UPLOAD_SIZE = 64 * MIB
PART_SIZE = 16 * MIB
STREAM_PASSES = 3


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def timed_requests(count: int, one: Callable[[], Awaitable[None]]) -> dict[str, float]:
    """Latency (ms) median and p95 of `count` sequential calls, and CPU ms per call."""
    await one()  # warm the connection pool
    latencies = []
    cpu0, loop0 = time.process_time(), time.thread_time()
    for _ in range(count):
        t0 = time.perf_counter()
        await one()
        latencies.append((time.perf_counter() - t0) * 1000)
    return {
        "median_ms": statistics.median(latencies),
        "p95_ms": percentile(latencies, 0.95),
        "cpu_ms": (time.process_time() - cpu0) * 1000 / count,
        "loop_cpu_ms": (time.thread_time() - loop0) * 1000 / count,
    }


async def timed_stream(chunks: Any) -> dict[str, float]:
    """Drain an async iterator of byte chunks: GB/s, CPU s per GiB, chunk sizes."""
    total = 0
    sizes = []
    t0 = time.perf_counter()
    cpu0, loop0 = time.process_time(), time.thread_time()
    async for chunk in chunks:
        total += len(chunk)
        sizes.append(len(chunk))
    wall = time.perf_counter() - t0
    gib = total / 1024**3
    return {
        "gb_per_s": total / wall / 1e9,
        "cpu_s_per_gib": (time.process_time() - cpu0) / gib,
        "loop_cpu_s_per_gib": (time.thread_time() - loop0) / gib,
        "median_chunk_kib": statistics.median(sizes) / 1024,
    }


async def timed_streams(start: Callable[[], Awaitable[Any]]) -> dict[str, float]:
    """The median of STREAM_PASSES full reads (the first read of a process runs cold)."""
    return median_of([await timed_stream(await start()) for _ in range(STREAM_PASSES)])


async def timed_upload(upload: Callable[[], Awaitable[None]]) -> dict[str, float]:
    t0 = time.perf_counter()
    cpu0, loop0 = time.process_time(), time.thread_time()
    await upload()
    return {
        "wall_s": time.perf_counter() - t0,
        "cpu_s": time.process_time() - cpu0,
        "loop_cpu_s": time.thread_time() - loop0,
    }


# -- obstore -------------------------------------------------------------------


async def bench_obstore(url: str, bucket: str, payload: bytes) -> dict[str, Any]:
    import obstore
    from obstore.store import S3Store

    store = S3Store(
        bucket,
        endpoint=url,
        client_options={"allow_http": True},
        retry_config={"max_retries": 0},
        config={"checksum_algorithm": "SHA256"},
    )

    async def head() -> None:
        await obstore.head_async(store, "small")

    async def ranged() -> None:
        result = await obstore.get_async(store, "mid", options={"range": (MIB, 2 * MIB)})
        async for _ in result.stream(min_chunk_size=64 * 1024):
            pass

    async def stream_big() -> Any:
        result = await obstore.get_async(store, "big")
        return result.stream(min_chunk_size=64 * 1024)

    async def upload() -> None:
        await obstore.put_async(
            store,
            "up-obstore",
            payload,
            attributes={"sha256": hashlib.sha256(payload).hexdigest()},
            chunk_size=PART_SIZE,
            max_concurrency=4,
        )

    return {
        "head": await timed_requests(HEADS, head),
        "get_1mib": await timed_requests(RANGED_GETS, ranged),
        "stream": await timed_streams(stream_big),
        "upload_64mib": await timed_upload(upload),
    }


# -- aiobotocore ---------------------------------------------------------------


async def bench_aiobotocore(url: str, bucket: str, payload: bytes) -> dict[str, Any]:
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session

    config = AioConfig(
        s3={"addressing_style": "path"},
        retries={"max_attempts": 1, "mode": "standard"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    session = get_session()
    async with session.create_client("s3", endpoint_url=url, config=config) as client:

        async def head() -> None:
            await client.head_object(Bucket=bucket, Key="small")

        async def ranged() -> None:
            resp = await client.get_object(
                Bucket=bucket, Key="mid", Range=f"bytes={MIB}-{2 * MIB - 1}"
            )
            body = resp["Body"]
            while await body.read(MIB):
                pass

        async def chunks(body: Any) -> Any:
            while chunk := await body.read(MIB):
                yield chunk

        async def stream_big() -> Any:
            resp = await client.get_object(Bucket=bucket, Key="big")
            return chunks(resp["Body"])

        async def upload() -> None:
            key = "up-aiobotocore"
            created = await client.create_multipart_upload(
                Bucket=bucket,
                Key=key,
                ChecksumAlgorithm="SHA256",
                Metadata={"sha256": hashlib.sha256(payload).hexdigest()},
            )
            upload_id = created["UploadId"]

            async def part(number: int) -> dict[str, Any]:
                data = payload[(number - 1) * PART_SIZE : number * PART_SIZE]
                digest = base64.b64encode(hashlib.sha256(data).digest()).decode()
                resp = await client.upload_part(
                    Bucket=bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=data,
                    ChecksumSHA256=digest,
                )
                return {"PartNumber": number, "ETag": resp["ETag"], "ChecksumSHA256": digest}

            count = len(payload) // PART_SIZE
            parts = await asyncio.gather(*(part(n) for n in range(1, count + 1)))
            await client.complete_multipart_upload(
                Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": list(parts)}
            )

        return {
            "head": await timed_requests(HEADS, head),
            "get_1mib": await timed_requests(RANGED_GETS, ranged),
            "stream": await timed_streams(stream_big),
            "upload_64mib": await timed_upload(upload),
        }


# -- what a process pays to have a client ---------------------------------------

FOOTPRINT = {
    "obstore": (
        "import obstore\n"
        "from obstore.store import S3Store\n"
        "S3Store('b', endpoint=URL, client_options={'allow_http': True})\n"
    ),
    "aiobotocore": (
        "import asyncio\n"
        "from aiobotocore.session import get_session\n"
        "async def make():\n"
        "    async with get_session().create_client('s3', endpoint_url=URL):\n"
        "        pass\n"
        "asyncio.run(make())\n"
    ),
}
FOOTPRINT_PROBE = """
import re, time
def rss():
    return int(re.search(r"VmRSS:\\s+(\\d+)", open("/proc/self/status").read()).group(1)) / 1024
URL = {url!r}
base = rss()
t0 = time.perf_counter()
exec({code!r})
print(time.perf_counter() - t0, rss() - base)
"""


def footprint(name: str, url: str) -> dict[str, float]:
    """Seconds to import the library and make one client, and the memory it added (MiB)."""
    probe = FOOTPRINT_PROBE.format(url=url, code=FOOTPRINT[name])
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    seconds, mib = out.stdout.split()
    return {"import_and_client_s": float(seconds), "rss_mib": float(mib)}


# -- driver --------------------------------------------------------------------

LIBRARIES = {"obstore": bench_obstore, "aiobotocore": bench_aiobotocore}


def median_of(rounds: list[Any]) -> Any:
    """Field-by-field median of (nested) result dicts."""
    first = rounds[0]
    if isinstance(first, dict):
        return {key: median_of([r[key] for r in rounds]) for key in first}
    return statistics.median(rounds)


def render(results: dict[str, dict[str, Any]]) -> str:
    rows = [
        (
            "HEAD latency median / p95 (ms)",
            "head",
            lambda r: f"{r['median_ms']:.2f} / {r['p95_ms']:.2f}",
        ),
        (
            "HEAD client CPU per request: process / loop thread (ms)",
            "head",
            lambda r: f"{r['cpu_ms']:.2f} / {r['loop_cpu_ms']:.2f}",
        ),
        (
            "1 MiB ranged GET median / p95 (ms)",
            "get_1mib",
            lambda r: f"{r['median_ms']:.1f} / {r['p95_ms']:.1f}",
        ),
        (
            "1 MiB ranged GET client CPU: process / loop thread (ms)",
            "get_1mib",
            lambda r: f"{r['cpu_ms']:.2f} / {r['loop_cpu_ms']:.2f}",
        ),
        ("streamed GET (GB/s)", "stream", lambda r: f"{r['gb_per_s']:.2f}"),
        (
            "streamed GET client CPU: process / loop thread (s per GiB)",
            "stream",
            lambda r: f"{r['cpu_s_per_gib']:.2f} / {r['loop_cpu_s_per_gib']:.2f}",
        ),
        ("streamed GET median chunk (KiB)", "stream", lambda r: f"{r['median_chunk_kib']:.0f}"),
        ("64 MiB multipart upload (s)", "upload_64mib", lambda r: f"{r['wall_s']:.2f}"),
        (
            "64 MiB upload client CPU: process / loop thread (s)",
            "upload_64mib",
            lambda r: f"{r['cpu_s']:.2f} / {r['loop_cpu_s']:.2f}",
        ),
        (
            "import + one client: seconds / MiB of RSS",
            "footprint",
            lambda r: f"{r['import_and_client_s']:.2f} / {r['rss_mib']:.0f}",
        ),
    ]
    names = list(results)
    lines = ["| measure | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for label, key, fmt in rows:
        lines.append(f"| {label} | " + " | ".join(fmt(results[n][key]) for n in names) + " |")
    return "\n".join(lines)


async def run(rounds: int, big_mib: int) -> dict[str, dict[str, Any]]:
    with MotoServer() as moto:
        os.environ.update(s3_env(moto.url))
        bucket = moto.create_bucket()
        moto.put_object(bucket, "small", b"x" * 1024)
        moto.put_object(bucket, "mid", os.urandom(4 * MIB))  # moto reads whole objects per range
        moto.put_object(bucket, "big", os.urandom(big_mib * MIB))
        payload = os.urandom(UPLOAD_SIZE)
        collected: dict[str, list[dict[str, Any]]] = {name: [] for name in LIBRARIES}
        for number in range(rounds):
            order = list(LIBRARIES) if number % 2 == 0 else list(reversed(LIBRARIES))
            for name in order:
                results = await LIBRARIES[name](moto.url, bucket, payload)
                results["footprint"] = footprint(name, moto.url)
                collected[name].append(results)
                print(f"round {number + 1}: {name} done", file=sys.stderr)
        return {name: median_of(results) for name, results in collected.items()}


OBSTORE_MISSING = "obstore is not installed: run `.venv/bin/pip install obstore` first"


def main() -> None:
    if importlib.util.find_spec("obstore") is None:
        sys.exit(OBSTORE_MISSING)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--big-mib", type=int, default=256, help="size of the streamed object")
    parser.add_argument("--json", help="also write the results as JSON here")
    args = parser.parse_args()
    results = asyncio.run(run(args.rounds, args.big_mib))
    print(render(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
