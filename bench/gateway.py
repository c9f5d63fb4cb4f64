"""Gateway benchmark: signed webhooks accepted per second by one production-like process.

`castghl-gateway` runs as operators run it (its console script: uvicorn, uvloop,
httptools, INFO logging to a file) and publishes persistent, confirmed, mandatory to a
real quorum queue under a prefix of its own. A bare ASGI app on the same server stack
is measured in the same run with the same load generator, so gateway/baseline says what
our code costs independent of this machine. The load generator is its own process
(`bench.load`); RabbitMQ shares the same cores, as it did for reference/stack.md.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench import rabbit
from bench.report import ROOT, heading, pairs, rss_mb, table
from castghl.common.topology import Topology
from castghl.sandbox.server import free_port
from castghl.sandbox.stack import HOST, Process

TARGET_RATE = 1_500
TARGET_P99_MS = 40.0
TARGET_CPU_US = 250.0  # server CPU per accepted webhook, on a quiet machine
# Enough distinct signed webhooks for ~6,600/s over warm-up + window, well above what one
# process reached on this machine kind (~4,400/s, bench/README.md); exhaustion would be
# reported, and the rate is computed over the real window either way.
GATEWAY_POOL = 80_000
BASELINE_POOL = 5_000  # the bare app ignores content: cycled
_PASSED_ENV = {"PATH", "HOME", "LANG", "LC_ALL", "TZ", "SSL_CERT_FILE"}


@dataclass(frozen=True)
class Signing:
    """A key of our own: the gateway trusts its public half, the load generator signs."""

    key_hex: str
    public_pem: str

    @classmethod
    def new(cls) -> Signing:
        key = Ed25519PrivateKey.generate()
        pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
        return cls(key.private_bytes_raw().hex(), pem.decode())


def _process(name: str, args: list[str], env: dict[str, str], logs: Path) -> Process:
    port = free_port()
    base = {k: v for k, v in os.environ.items() if k in _PASSED_ENV}
    return Process(name, args, {**base, **env, "HOST": HOST, "PORT": str(port)},
                   logs / f"{name}.log", url=f"http://{HOST}:{port}")


def _port(process: Process) -> int:
    assert process.url is not None
    return int(process.url.rsplit(":", 1)[1])


def pid(process: Process) -> int:
    assert process.popen is not None
    return process.popen.pid


def load(target: Process, signing: Signing, *, count: int, cycle: bool, concurrency: int,
         warmup: float, duration: float) -> dict[str, Any]:
    """Run the load generator (its own process) against `target`; its JSON figures."""
    args = [sys.executable, "-m", "bench.load", "--port", str(_port(target)),
            "--server-pid", str(pid(target)), "--key-hex", signing.key_hex,
            "--count", str(count), "--concurrency", str(concurrency),
            "--warmup", str(warmup), "--duration", str(duration)]
    done = subprocess.run([*args, *(["--cycle"] if cycle else [])], cwd=ROOT,
                          capture_output=True, text=True, timeout=warmup + duration + 120,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed against {target.name}:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def gateway_process(name: str, args: list[str], *, rabbitmq_url: str, topology: Topology,
                    signing: Signing, logs: Path, extra: dict[str, str] | None = None
                    ) -> Process:
    """The gateway's production environment, on its own queue prefix."""
    return _process(name, args, {
        "RABBITMQ_URL": rabbitmq_url, "QUEUE_PREFIX": topology.prefix,
        "GHL_WEBHOOK_PUBLIC_KEY": signing.public_pem,
        "INBOUND_API_KEY": secrets.token_urlsafe(24), **(extra or {}),
    }, logs)


def new_topology() -> Topology:
    return Topology(prefix=f"bench{secrets.token_hex(4)}.")


def _stored(rabbitmq_url: str, topology: Topology) -> int | None:
    try:
        return rabbit.message_count(rabbitmq_url, topology.outbound.queue.name)
    except rabbit.RabbitUnavailable as exc:
        print(f"[gateway] could not count the queue: {exc}", file=sys.stderr)
        return None


def run(rabbitmq_url: str, workdir: Path, *, concurrency: int = 50, warmup: float = 2.0,
        duration: float = 10.0) -> dict[str, Any]:
    signing, topology, logs = Signing.new(), new_topology(), workdir / "logs"
    baseline = _process("baseline", ["python", "-m", "bench.baseline"],
                        {"PYTHONPATH": str(ROOT)}, logs)
    gateway = gateway_process("gateway", ["castghl-gateway"], rabbitmq_url=rabbitmq_url,
                              topology=topology, signing=signing, logs=logs)
    try:
        baseline.start()
        gateway.start()
        baseline.wait_ready("/")
        gateway.wait_ready("/readyz")
        base = load(baseline, signing, count=BASELINE_POOL, cycle=True,
                    concurrency=concurrency, warmup=warmup, duration=duration)
        gw = load(gateway, signing, count=GATEWAY_POOL, cycle=False,
                  concurrency=concurrency, warmup=warmup, duration=duration)
        stored = _stored(rabbitmq_url, topology)
        rss = {"castghl-gateway": rss_mb(pid(gateway)), "baseline": rss_mb(pid(baseline))}
    finally:
        gateway.stop()
        baseline.stop()
        rabbit.delete_queues(rabbitmq_url, topology)
    return {
        "concurrency": concurrency, "warmup": warmup, "duration": duration,
        "baseline": base, "gateway": gw,
        "ratio_rate": gw["rate"] / base["rate"],
        "ratio_p99": gw["p99_ms"] / base["p99_ms"],
        "queue": topology.outbound.queue.name, "stored": stored,
        "accepted_total": gw["total_accepted"], "rss_mb": rss,
        "targets": {"rate": TARGET_RATE, "p99_ms": TARGET_P99_MS, "cpu_us": TARGET_CPU_US},
        "log_level": "INFO (production default)",
    }


def _row(name: str, figures: dict[str, Any]) -> list[object]:
    non_200 = sum(figures["other"].values())
    return [name, round(figures["rate"]), figures["p50_ms"], figures["p90_ms"],
            figures["p99_ms"], figures["max_ms"], non_200, figures["server_cpu_us"],
            figures["server_cores"], figures["client_cores"], figures["machine_cores"]]


def render(result: dict[str, Any]) -> str:
    base, gw = result["baseline"], result["gateway"]
    title = (f"Gateway: signed ProviderOutboundMessage webhooks, concurrency "
             f"{result['concurrency']}, {result['warmup']:g} s warm-up + "
             f"{result['duration']:g} s measured")
    headers = ["endpoint", "ok/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "non-200",
               "srv µs/req", "srv cores", "loadgen cores", "machine cores"]
    stored, accepted = result["stored"], result["accepted_total"]
    others = {**gw["warmup_other"], **gw["other"]}
    lines = [
        heading(title),
        table(headers, [_row("bare ASGI baseline", base), _row("castghl-gateway", gw)]),
        "",
        pairs([
            ("gateway / baseline", f"{result['ratio_rate']:.2f} of the throughput, "
                                   f"{result['ratio_p99']:.1f}x the p99"),
            ("target (information)", f">= {TARGET_RATE:,} accepted/s per process, "
                                     f"p99 < {TARGET_P99_MS:g} ms at concurrency 50, "
                                     f"<= {TARGET_CPU_US:g} µs server CPU per webhook"),
            ("measured", f"{gw['rate']:,.0f} accepted/s, p99 {gw['p99_ms']:.1f} ms, "
                         f"{gw['server_cpu_us']:.0f} µs server CPU per webhook"),
            ("non-200 answers", ", ".join(f"{k}: {v}" for k, v in others.items()) or "none"),
            ("accepted vs stored", f"{accepted:,} answered 200 accepted (warm-up + window); "
                                   + (f"{stored:,} messages in {result['queue']} "
                                      f"({'equal' if stored == accepted else 'DIFFERENT'})"
                                      if stored is not None else "queue not counted")),
            ("RSS at the end", ", ".join(f"{k} {v:.0f} MB" for k, v in
                                         result["rss_mb"].items() if v is not None)),
            ("request pool", f"{gw['pool']:,} distinct signed webhooks, built in "
                             f"{gw['build_s']:.1f} s before the run"
                             + (" (EXHAUSTED: window cut short)" if gw["pool_exhausted"]
                                else "")),
        ]),
        "  srv µs/req: server CPU per answered request; cores: CPU seconds per second in "
        "the window\n  (machine cores minus server and load generator is mostly RabbitMQ).",
    ]
    return "\n".join(lines)
