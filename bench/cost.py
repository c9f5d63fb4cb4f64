"""Cost benchmark: CPU-seconds per 1,000 SMS per process, idle latency, memory.

The whole bridge runs as real processes (`castghl.sandbox.stack.Stack`) with ONE sender,
on RabbitMQ and Mongo. Cast's rate limit is lifted in the simulator and in the sender, so
that the CPU the bridge spends is measured, not the 30/s it must wait for in production.

1. Idle latency: webhooks one at a time, each after the last one reached Cast; from the
   gateway's 200 (the GHL simulator's delivery time) to the Cast simulator's receipt of
   the send. Both clocks are this machine's; the delivery time has millisecond steps.
2. Cost: a burst of webhooks through to every final GHL status (receipts included), with
   each process's CPU read from /proc/<pid>/stat before and after. The simulators and the
   load (the GHL simulator signing and delivering webhooks) are not counted.

Targets (issue #16), printed, never asserted: total <= 5 CPU-s per 1,000 SMS, sender
<= 2.5, idle p99 < 15 ms, every process under 120 MB RSS.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
import time
from pathlib import Path
from statistics import quantiles
from typing import Any

import httpx

from bench import rabbit
from bench.load import process_cpu
from bench.pipeline import fill, seconds
from bench.report import heading, pairs, rss_mb, table
from castghl.common.topology import Topology
from castghl.sandbox.infra import Infra
from castghl.sandbox.stack import Stack

MESSAGES = 2_000
IDLE_SAMPLES = 200
IDLE_WARM_UP = 20
STATUS_TIMEOUT_SECONDS = 300.0
TARGETS = {"total": 5.0, "sender": 2.5, "idle_p99_ms": 15.0, "rss_mb": 120.0}
# Cast's limit lifted: the simulator lets everything through and the sender's lane does
# not hold it back, so what is measured is the bridge's own work per message. GHL's
# per-location limit is raised the same way (a burst to one location would otherwise wait
# on it). Receipts come 5 s after a send, as carriers take seconds.
LIFTED = 1000.0
CAST_KNOBS: dict[str, Any] = {"rate_per_second": 100_000.0, "burst": 100_000,
                              "dlr_delay_seconds": 5.0}
GHL_KNOBS: dict[str, Any] = {"rate_limit_max": 1_000_000}
SENDER_ENV = {"CAST_RATE_LIMIT_PER_SECOND": f"{LIFTED:g}", "CAST_RATE_BURST": "10000",
              "CAST_KEY_RATE_LIMIT_PER_SECOND": f"{LIFTED:g}",
              "GHL_LOCATION_CALLS_PER_10S": "100000"}
MEASURED = ("gateway", "sender-1", "oauth")


def _pid_of(command: str) -> int | None:
    """The one running process whose executable is `command` (RabbitMQ's `beam.smp`),
    or None when there is none or more than one."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == command:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found[0] if len(found) == 1 else None


def _pid(stack: Stack, name: str) -> int:
    popen = stack.processes[name].popen
    assert popen is not None, f"{name} is not running"
    return popen.pid


def _cpu(pids: dict[str, int]) -> dict[str, float]:
    return {name: process_cpu(pid) for name, pid in pids.items()}


def _finals(ghl: str, ids: set[str]) -> dict[str, dict[str, Any]]:
    messages = httpx.get(f"{ghl}/_sandbox/messages", params={"direction": "outbound"},
                         timeout=60).json()
    return {m["id"]: m for m in messages if m["id"] in ids}


def _wait_final(stack: Stack, ids: set[str]) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + STATUS_TIMEOUT_SECONDS
    while True:
        held = _finals(stack.ghl, ids)
        if all(m["status"] in {"delivered", "failed"} for m in held.values()) or (
                time.monotonic() > deadline):
            return held
        time.sleep(1.0)


def _phases(stack: Stack, held: dict[str, dict[str, Any]], start: float) -> dict[str, float]:
    """Seconds from the first webhook of the burst to its first and last Cast send and
    to its last status written: where a slow burst spends its time."""
    sends = [entry["at"] - start for entry in stack.cast_sent() if entry["at"] >= start]
    written = [seconds(message["statuses"][-1]["at"]) - start for message in held.values()
               if message["statuses"]]
    return {"first send": min(sends, default=0.0), "last send": max(sends, default=0.0),
            "last status": max(written, default=0.0)}


def _bulk_writes(metrics: str) -> dict[str, float]:
    """Gathered writes per bulk write, by collection, from the sender's /metrics text."""
    counts: dict[str, dict[str, float]] = {}
    for line in metrics.splitlines():
        for kind in ("round_trips", "writes"):
            prefix = f"castghl_mongo_bulk_{kind}_total{{collection=\""
            if line.startswith(prefix):
                name, _, value = line[len(prefix):].partition("\"} ")
                counts.setdefault(name, {})[kind] = float(value)
    return {name: c.get("writes", 0.0) / c["round_trips"] for name, c in counts.items()
            if c.get("round_trips")}


def _idle_latency(stack: Stack) -> tuple[list[float], set[str]]:
    """Milliseconds from the gateway's 200 to Cast's receipt of the send, one message at
    a time on an otherwise idle bridge; and the messages sent."""
    seen = 0
    latencies: list[float] = []
    ids: set[str] = set()
    for i in range(IDLE_WARM_UP + IDLE_SAMPLES):
        answer = stack.send(phone="+63 917 123 4567", message=f"Idle {i}: see you at 3 pm.")
        delivered = answer["deliveries"][-1]
        ids.add(answer["messageId"])
        deadline = time.monotonic() + 30
        while len(sent := stack.cast_sent()) <= seen:  # the next send, whenever it comes
            if time.monotonic() > deadline:
                raise RuntimeError(f"idle message {i} never reached Cast")
            time.sleep(0.01)
        seen = len(sent)
        if i >= IDLE_WARM_UP:
            latencies.append((sent[-1]["at"] - seconds(delivered["at"])) * 1000)
    return latencies, ids


def run(rabbitmq_url: str, mongo: Infra, workdir: Path, *, messages: int = MESSAGES,
        extra_pids: dict[str, int] | None = None) -> dict[str, Any]:
    stack = Stack(rabbitmq_url, f"{mongo.url.rstrip('/')}/bench_{secrets.token_hex(4)}",
                  workdir, senders=1, ghl_knobs=dict(GHL_KNOBS), cast_knobs=dict(CAST_KNOBS),
                  sender_env=dict(SENDER_ENV))
    try:
        with stack.running():
            stack.install()
            print(f"[cost] idle latency: {IDLE_SAMPLES} webhooks one at a time",
                  file=sys.stderr)
            latencies, idle_ids = _idle_latency(stack)
            _wait_final(stack, idle_ids)  # their receipts are not the burst's cost
            pids = {name: _pid(stack, name) for name in MEASURED}
            broker = _pid_of("beam.smp")
            if broker is not None:
                pids["rabbitmq (whole node)"] = broker
            counted = dict(pids)
            pids.update(extra_pids or {})
            before = _cpu(pids)
            started = time.monotonic()
            print(f"[cost] {messages:,} webhooks through to their final statuses",
                  file=sys.stderr)
            ids, answers = asyncio.run(fill(stack.ghl, messages))
            held = _wait_final(stack, set(ids))
            elapsed = time.monotonic() - started
            after = _cpu(pids)
            phases = _phases(stack, held, time.time() - elapsed)
            bulk = _bulk_writes(httpx.get(f"{stack.processes['sender-1'].url}/metrics",
                                          timeout=10).text)
            rss = {name: (rss_mb(pid), rss_mb(pid, "VmHWM")) for name, pid in pids.items()}
    finally:
        rabbit.delete_queues(rabbitmq_url, Topology(prefix=stack.queue_prefix))
    per_1000 = {name: (after[name] - before[name]) / messages * 1000 for name in pids}
    cuts = quantiles(latencies, n=100)
    statuses: dict[str, int] = {}
    for message in held.values():
        statuses[str(message["status"])] = statuses.get(str(message["status"]), 0) + 1
    return {
        "messages": messages, "elapsed_s": elapsed, "webhook_answers": dict(answers),
        "ghl_statuses": statuses,
        "status_writes_over_one": sum(1 for m in held.values() if len(m["statuses"]) > 1),
        "cpu_s_per_1000": per_1000,
        "phases_s": phases,
        "mongo_bulk": bulk,
        "counted": list(counted),
        "total_cpu_s_per_1000": sum(per_1000[name] for name in counted),
        "idle_ms": {"samples": len(latencies), "p50": cuts[49], "p90": cuts[89],
                    "p99": cuts[98], "max": max(latencies),
                    "slowest": sorted(latencies)[-5:]},
        "rss_mb": {name: {"now": now, "peak": peak} for name, (now, peak) in rss.items()},
        "targets": TARGETS,
        "changed_settings": {"Cast simulator": "rate 100,000/s, burst 100,000, receipts "
                                               "after 5 s",
                             "sender": f"CAST_RATE_LIMIT_PER_SECOND={LIFTED:g}, "
                                       "CAST_RATE_BURST=10000, "
                                       f"CAST_KEY_RATE_LIMIT_PER_SECOND={LIFTED:g}, "
                                       "GHL_LOCATION_CALLS_PER_10S=100000"},
    }


def _mb(value: float | None) -> str:
    return f"{value:.0f}" if value is not None else "gone"


def render(result: dict[str, Any]) -> str:
    targets = result["targets"]
    counted = set(result["counted"])
    rows = []
    for name, cpu in result["cpu_s_per_1000"].items():
        rss = result["rss_mb"][name]
        target = "sender <= 2.5" if name.startswith("sender") else ""
        rows.append([name + ("" if name in counted else " (not counted)"), f"{cpu:.2f}",
                     _mb(rss["now"]), _mb(rss["peak"]), target])
    idle = result["idle_ms"]
    total = result["total_cpu_s_per_1000"]
    return "\n".join([
        heading(f"Cost: {result['messages']:,} SMS through to their final status, one "
                "sender, Cast's limit lifted"),
        pairs([
            ("burst to final statuses", f"{result['elapsed_s']:.1f} s; gateway answers "
                                        f"{result['webhook_answers']}"),
            ("GHL final statuses", f"{result['ghl_statuses']}; more than one status "
                                   f"write: {result['status_writes_over_one']}"),
            ("burst phases", ", ".join(f"{name} {at:.1f} s" for name, at in
                                       result["phases_s"].items())),
            ("writes per bulk write", ", ".join(f"{name} {per:.1f}" for name, per in
                                                result["mongo_bulk"].items())),
            ("total CPU-s per 1,000 SMS", f"{total:.2f} (target <= {targets['total']:g}; "
                                          f"{total / targets['total']:.1f}x the target)"),
            ("idle webhook 200 -> Cast call", f"p50 {idle['p50']:.1f} ms, p90 "
                                              f"{idle.get('p90', 0.0):.1f} ms, p99 "
                                              f"{idle['p99']:.1f} ms, max {idle['max']:.1f} ms "
                                              f"over {idle['samples']} (target p99 < "
                                              f"{targets['idle_p99_ms']:g} ms)"),
            ("slowest idle sends", ", ".join(f"{ms:.0f}" for ms in idle.get("slowest", []))
             + " ms"),
            ("changed from production", "; ".join(f"{k}: {v}" for k, v in
                                                  result["changed_settings"].items())),
        ]),
        "",
        table(["process", "CPU-s / 1,000 SMS", "RSS MB", "peak RSS MB", "target"], rows),
        f"(every process: RSS < {targets['rss_mb']:g} MB)",
    ])
