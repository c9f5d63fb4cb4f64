"""Printing the figures: aligned tables, machine facts, RSS, and the JSON copy."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LATEST = ROOT / "var" / "bench" / "latest.json"


def rss_mb(pid: int, field: str = "VmRSS") -> float | None:
    """Resident memory from /proc/<pid>/status (kB), or None if it is gone: `VmRSS` now,
    `VmHWM` the most it reached."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        return None
    return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def reference_work_ms(rounds: int = 3) -> float:
    """CPU milliseconds this machine takes for a fixed piece of pure-Python work (JSON,
    dicts, strings, calls: what a service spends its CPU on), the best of `rounds`.

    Machines of one kind have differed by more than three times in the CPU the same
    commit spent per message (bench/README.md): figures from two machines compare only
    through this one."""
    def step(i: int) -> int:
        entry = {"messageId": f"m{i:08d}", "locationId": "loc-1", "status": "delivered",
                 "parts": [{"n": n, "id": f"c{i}-{n}"} for n in range(3)]}
        text = json.dumps(entry)
        return len(json.loads(text)["parts"]) + len(text.split(",")) + sorted(entry).index(
            "status")

    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        total = sum(step(i) for i in range(20_000))
        best = min(best, (time.process_time() - started) * 1000)
    assert total > 0
    return best


def background_load(seconds: float = 1.0) -> str:
    """How busy the machine is before we start: other work on these cores skews figures."""
    from bench.load import machine_cpu

    busy, total = machine_cpu()
    time.sleep(seconds)
    busy_after, total_after = machine_cpu()
    cores = len(os.sched_getaffinity(0))
    share = (busy_after - busy) / max(total_after - total, 1e-9)
    return f"{share * cores:.2f} of {cores} cores (1 s sample)"


def machine(rabbitmq: str, mongo: str) -> dict[str, Any]:
    return {
        "cores": len(os.sched_getaffinity(0)),
        "cpu": _cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "uvicorn": version("uvicorn"),
        "uvloop": version("uvloop"),
        "rabbitmq": rabbitmq,
        "mongo": mongo,
    }


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Left-aligned first column, right-aligned figures."""
    cells = [[str(h) for h in headers], *[[_cell(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *(line(row) for row in cells[1:])])


def pairs(rows: Sequence[tuple[str, object]]) -> str:
    """`label  value` lines, labels padded to one width."""
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"  {label.ljust(width)}  {_cell(value)}" for label, value in rows)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def heading(title: str) -> str:
    return f"\n{title}\n{'=' * len(title)}"


def write_json(figures: dict[str, Any], path: Path = LATEST) -> Path:
    """Merge into the last file: a `--only` run replaces its own sections and keeps the
    others, each of which carries the time it was measured."""
    try:
        merged: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        merged = {}
    merged.update(figures)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(merged, indent=2, default=str) + "\n")
    return path
