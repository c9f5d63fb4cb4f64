"""Closed-loop HTTP/1.1 load generator, run as its own process: `python -m bench.load`.

Cheap per request so that, on 2 cores, the server under test is the bottleneck and not
this process: every request (signed ProviderOutboundMessage, unique `messageId`) is
built and signed before the first connection opens; each of `--concurrency`
keep-alive connections is one coroutine on uvloop writing pre-rendered bytes and
parsing only the status line and Content-Length of the answer (httpx costs several
times more per request). A warm-up runs on the same connections, then the measured
window. Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
import os
import time
import uuid
from array import array
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import uvloop
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

PHONE = "+639171234567"
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def build_requests(*, host: str, port: int, path: str, key_hex: str, count: int,
                   location_id: str) -> list[bytes]:
    """Whole HTTP requests, each a distinct webhook signed over its exact body bytes."""
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(key_hex))
    run = uuid.uuid4().hex[:8]
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Content-Type: application/json\r\n").encode()
    requests = []
    for i in range(count):
        body = json.dumps({
            "contactId": f"contact-{i % 500}", "locationId": location_id,
            "messageId": f"bench-{run}-{i}", "type": "SMS", "phone": PHONE,
            "message": f"Benchmark message {i}: your appointment is tomorrow at 10:00.",
            "attachments": [], "userId": "bench-user", "conversationId": f"conv-{i % 500}",
            "conversationProviderId": "bench-provider", "timestamp": stamp,
            "webhookId": f"wh-{run}-{i}",
        }, separators=(",", ":")).encode()
        signature = base64.b64encode(key.sign(body))
        requests.append(head + b"Content-Length: " + str(len(body)).encode()
                        + b"\r\nX-GHL-Signature: " + signature + b"\r\n\r\n" + body)
    return requests


def content_length(head: bytes) -> int:
    start = head.lower().find(b"\r\ncontent-length:")
    if start < 0:
        return 0
    end = head.find(b"\r\n", start + 2)
    return int(head[start + 17:end])


@dataclass
class Tally:
    accepted: int = 0
    other: Counter[str] = field(default_factory=Counter)  # status (or error) -> count
    latencies: array[float] = field(default_factory=lambda: array("d"))
    last_done: float = 0.0


@dataclass
class Timeline:
    measure_from: float
    end: float


async def connection(host: str, port: int, pool: Iterator[bytes], *, timeline: Timeline,
                     warm: Tally, measured: Tally) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    clock = time.perf_counter
    while (started := clock()) < timeline.end:
        request = next(pool, None)
        if request is None:
            break  # pool exhausted: reported, and the rate uses the real window
        tally = measured if started >= timeline.measure_from else warm
        try:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            body = await reader.readexactly(content_length(head))
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            tally.other[type(exc).__name__] += 1
            writer.close()
            await asyncio.sleep(0.01)
            reader, writer = await asyncio.open_connection(host, port)
            continue
        done = clock()
        status = head[9:12].decode()
        if status == "200" and b'"accepted"' in body:
            tally.accepted += 1
        else:
            tally.other[status] += 1
        if tally is measured:
            tally.latencies.append(done - started)
            tally.last_done = max(tally.last_done, done)
        if b"\r\nconnection: close" in head.lower():
            writer.close()
            reader, writer = await asyncio.open_connection(host, port)
    writer.close()


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine, summed over all cores."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / _CLK_TCK, sum(values[:8]) / _CLK_TCK


async def cpu_during(timeline: Timeline, server_pid: int) -> dict[str, float]:
    """Cores used by the server, by this process and by the whole machine in the window."""
    await asyncio.sleep(max(0.0, timeline.measure_from - time.perf_counter()))
    start = (time.perf_counter(), process_cpu(server_pid), time.process_time(), machine_cpu())
    await asyncio.sleep(max(0.0, timeline.end - time.perf_counter()))
    wall = time.perf_counter() - start[0]
    busy = machine_cpu()[0] - start[3][0]
    return {"wall": wall,
            "server_cpu": process_cpu(server_pid) - start[1],
            "client_cpu": time.process_time() - start[2],
            "machine_busy_cpu": busy}


def percentile(ordered: list[float], fraction: float) -> float:
    """Nearest rank, in ms."""
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))] * 1000


async def run(args: argparse.Namespace) -> dict[str, Any]:
    built = time.perf_counter()
    requests = build_requests(host=args.host, port=args.port, path=args.path,
                              key_hex=args.key_hex, count=args.count,
                              location_id=args.location_id)
    build_seconds = time.perf_counter() - built
    # The bare baseline does not care about duplicates, so it may cycle; the gateway
    # must see each messageId once.
    pool: Iterator[bytes] = itertools.cycle(requests) if args.cycle else iter(requests)
    warm, measured = Tally(), Tally()
    now = time.perf_counter()
    timeline = Timeline(now + args.warmup, now + args.warmup + args.duration)
    cpu = asyncio.create_task(cpu_during(timeline, args.server_pid))
    await asyncio.gather(*(connection(args.host, args.port, pool, timeline=timeline,
                                      warm=warm, measured=measured)
                           for _ in range(args.concurrency)))
    usage = await cpu
    ordered = sorted(measured.latencies)
    window = max(measured.last_done - timeline.measure_from, 1e-9)
    answered = len(ordered) or 1
    return {
        "concurrency": args.concurrency, "warmup_s": args.warmup, "window_s": window,
        "accepted": measured.accepted, "rate": measured.accepted / window,
        "other": dict(measured.other), "p50_ms": percentile(ordered, 0.50),
        "p90_ms": percentile(ordered, 0.90), "p99_ms": percentile(ordered, 0.99),
        "max_ms": ordered[-1] * 1000 if ordered else float("nan"),
        "warmup_accepted": warm.accepted, "warmup_other": dict(warm.other),
        "total_accepted": warm.accepted + measured.accepted,
        "pool": len(requests), "pool_exhausted": not args.cycle and next(pool, None) is None,
        "build_s": build_seconds,
        "server_cores": usage["server_cpu"] / usage["wall"],
        "client_cores": usage["client_cpu"] / usage["wall"],
        "machine_cores": usage["machine_busy_cpu"] / usage["wall"],
        "server_cpu_us": usage["server_cpu"] / answered * 1e6,
        "client_cpu_us": usage["client_cpu"] / answered * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/webhooks/ghl/provider-outbound")
    parser.add_argument("--server-pid", type=int, required=True)
    parser.add_argument("--key-hex", required=True, help="Ed25519 private key, raw, hex")
    parser.add_argument("--location-id", default="bench-location")
    parser.add_argument("--count", type=int, default=80_000)
    parser.add_argument("--cycle", action="store_true", help="reuse requests (baseline)")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--duration", type=float, default=10.0)
    print(json.dumps(uvloop.run(run(parser.parse_args()))))


if __name__ == "__main__":
    main()
