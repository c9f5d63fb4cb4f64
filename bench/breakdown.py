"""Diagnostics (`bench/run.py --breakdown`): where the gateway's CPU per webhook goes.

The gateway is started again and again through `bench.ablate`, each time with one more
stage taken out (cumulative), under the same load as the main benchmark. The server CPU
a removal saves per request is that stage's cost; `freeze` comes first because it is a
candidate fix rather than a removal, and GC pauses otherwise blur every other row.
Patched processes: these figures explain the main benchmark, they do not replace it.
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
    ("+ gc.freeze() after start-up", "freeze"),
    ("+ no per-webhook INFO log line", "nolog"),
    ("+ no signature verification", "noverify"),
    ("+ no publish (nothing stored)", "nopublish"),
]


def run(rabbitmq_url: str, workdir: Path, *, concurrency: int = 50, warmup: float = 2.0,
        duration: float = 10.0) -> list[dict[str, Any]]:
    signing = gateway.Signing.new()
    rows: list[dict[str, Any]] = []
    changes: list[str] = []
    for label, change in STEPS:
        if change:
            changes.append(change)
        topology = gateway.new_topology()  # an empty queue for each step
        gc_file = workdir / f"gc-{len(rows)}.json"
        process = gateway.gateway_process(
            f"ablate-{len(rows)}", ["python", "-m", "bench.ablate"], rabbitmq_url=rabbitmq_url,
            topology=topology, signing=signing, logs=workdir / "logs",
            extra={"ABLATE": ",".join(changes), "PYTHONPATH": str(ROOT),
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
        rows.append({"step": label, "ablate": ",".join(changes), **figures,
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
    previous: float | None = None
    for row in rows:
        saved = "" if previous is None else f"{previous - row['server_cpu_us']:.0f}"
        previous = row["server_cpu_us"]
        gc = row["gc"]
        lines.append([row["step"], round(row["rate"]), row["p50_ms"], row["p99_ms"],
                      row["server_cpu_us"], saved, gc["counts"][2], gc["max_full_ms"],
                      gc["ms"], row["server_cores"], row["machine_cores"]])
    return "\n".join([
        heading("Gateway breakdown (diagnostic: patched gateway, cumulative removals)"),
        table(["step", "ok/s", "p50 ms", "p99 ms", "srv µs/req", "saved µs", "full GCs",
               "max GC ms", "all GC ms", "srv cores", "machine cores"], lines),
        "  saved µs: server CPU per request that this step removed (noise is about ±30 µs).",
        "  full GCs / max GC ms: gen-2 collections during warm-up + window and the longest;",
        "  every request in flight waits for one, so they set the p99.",
    ])
