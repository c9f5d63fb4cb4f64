"""Diagnostics (`bench/run.py --breakdown`): where the gateway's CPU per webhook goes.

The gateway is started again and again through `bench.ablate`, each time with one set of
changes, under the same load as the main benchmark. Each row's difference from the
gateway as deployed prices what it changed: a `+` row puts back how a stage was done
before the hot path was trimmed (its cost over the current way), a `-` row takes a stage
out (its whole cost). Patched processes: these figures explain the main benchmark, they
do not replace it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from bench import gateway, rabbit
from bench.report import ROOT, heading, table

STEPS = [
    ("as deployed (castghl-gateway)", ""),
    ("+ INFO line per webhook (before)", "infolog"),
    ("+ FastAPI webhook routes (before)", "fastapi"),
    ("+ FastStream's publish (before)", "faststream"),
    ("+ all three: the hot path before", "infolog,fastapi,faststream"),
    ("- gc.freeze() after start-up", "nofreeze"),
    ("- signature check", "noverify"),
    ("- signature check - publish", "noverify,nopublish"),
]


def run(rabbitmq_url: str, workdir: Path, *, concurrency: int = 50, warmup: float = 2.0,
        duration: float = 10.0) -> list[dict[str, Any]]:
    signing = gateway.Signing.new()
    rows: list[dict[str, Any]] = []
    for label, changes in STEPS:
        topology = gateway.new_topology()  # an empty queue for each step
        gc_file = workdir / f"gc-{len(rows)}.json"
        process = gateway.gateway_process(
            f"ablate-{len(rows)}", ["python", "-m", "bench.ablate"], rabbitmq_url=rabbitmq_url,
            topology=topology, signing=signing, logs=workdir / "logs",
            extra={"ABLATE": changes, "PYTHONPATH": str(ROOT),
                   "GC_STATS": str(gc_file)})
        try:
            process.start()
            process.wait_ready("/readyz")
            before = _gc_snapshot(gc_file)
            figures = gateway.load(process, signing, count=gateway.GATEWAY_POOL, cycle=False,
                                   concurrency=concurrency, warmup=warmup, duration=duration)
            after = _gc_snapshot(gc_file)
        finally:
            process.stop()
            rabbit.delete_queues(rabbitmq_url, topology)
        rows.append({"step": label, "ablate": changes, **figures,
                     "gc": _gc_during(before, after)})
    return rows


def _gc_snapshot(path: Path) -> dict[str, Any]:
    time.sleep(0.6)  # the gateway rewrites it every 0.5 s
    try:
        snapshot: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return {"counts": [0, 0, 0], "seconds": [0.0, 0.0, 0.0], "full_pauses_ms": []}
    return snapshot


def _gc_during(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Collections during the load (warm-up and window), from two cumulative snapshots."""
    full = after["full_pauses_ms"][len(before["full_pauses_ms"]):]
    return {"counts": [a - b for a, b in zip(after["counts"], before["counts"], strict=True)],
            "ms": sum(after["seconds"]) * 1000 - sum(before["seconds"]) * 1000,
            "full_pauses_ms": full, "max_full_ms": max(full, default=0.0)}


def render(rows: list[dict[str, Any]]) -> str:
    lines = []
    deployed = rows[0]["server_cpu_us"]
    for row in rows:
        delta = row["server_cpu_us"] - deployed
        gc = row["gc"]
        lines.append([row["step"], round(row["rate"]), row["p50_ms"], row["p99_ms"],
                      row["server_cpu_us"], "" if row is rows[0] else f"{delta:+.0f}",
                      gc["counts"][2], gc["max_full_ms"], gc["ms"], row["server_cores"],
                      row["machine_cores"]])
    return "\n".join([
        heading("Gateway breakdown (diagnostic: patched gateways, one change set each)"),
        table(["step", "ok/s", "p50 ms", "p99 ms", "srv µs/req", "Δ µs", "full GCs",
               "max GC ms", "all GC ms", "srv cores", "machine cores"], lines),
        "  Δ µs: server CPU per request against the gateway as deployed (noise ±20-30 µs):",
        "  a + row prices the old way of a stage over the new one, a - row a whole stage.",
        "  full GCs / max GC ms: gen-2 collections during warm-up + window and the longest;",
        "  every request in flight waits for one, so they set the p99.",
    ])
