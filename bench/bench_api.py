"""api benchmarks: the REST gateway against raw NATS, and granian against uvicorn.

1. ``GET /api/v1/ib/status`` (one NATS round trip) through the gateway under its
   production server (granian, one worker) at 32 concurrent keep-alive connections,
   against a raw nats-py request/reply loop with 32 requests in flight on the same
   subject, measured in the same run against the same responder: throughput ratio
   (target >= 0.4) and the gateway's p99 latency (target <= 15 ms).
2. The ASGI server choice: the same Litestar app (a hello-world route, and the real
   gateway's ``/api/v1/ib/status``) under granian and under uvicorn as installed
   (no uvloop/httptools extras), same load, same run.

The responder is a minimal ``nats.micro`` service on ``ktrdr.ib.status`` answering a
fixed ``IbStatus`` in its own process, so the figures measure the gateway, not IB:
the real connector asks IB for its clock on every status request. Every party (load
generator, server, responder, nats-server) runs in its own process; the load
generator is ``httpload.c``, a small epoll HTTP/1.1 keep-alive client compiled at run time
(no HTTP tool ships here; a Python generator took a whole core of this 2-core machine),
or an asyncio client where no C compiler is found.

Each app runs under both servers at once and the loads alternate over rounds (3, or 2
with ``--quick``); each figure is its best round, since these machines are shared.

Run directly for one part: ``python bench/bench_api.py responder|rawload|httpload ...``.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
CONCURRENCY = 32
STATUS_PATH = "/api/v1/ib/status"


# ---------------------------------------------------------------- the parties (subprocesses)


async def _responder(nats_url: str) -> None:
    """Serve ``ktrdr.ib.status`` with a fixed answer until SIGTERM."""
    from datetime import UTC, datetime

    from ktrdr_shared import subjects
    from ktrdr_shared.config import Settings
    from ktrdr_shared.messages import IbStatus, StatusRequest
    from ktrdr_shared.runtime import ServiceApp

    app = ServiceApp(
        name="ib-connector",
        version="0.1.0",
        description="bench responder",
        settings=Settings.from_env({"KTRDR_NATS_URL": nats_url}),
    )
    status = IbStatus(
        connected=True,
        host="127.0.0.1",
        port=4002,
        client_id=1,
        server_version=178,
        since=datetime(2024, 6, 28, tzinfo=UTC),
        pacing={"open_requests": 0.0},
    )

    async def answer(_: StatusRequest) -> IbStatus:
        return status

    app.endpoint("status", subjects.IB_STATUS, StatusRequest)(answer)
    print("ready", flush=True)
    await app.run()


async def _raw_load(nats_url: str, seconds: float) -> dict[str, Any]:
    """Request ``ktrdr.ib.status`` with 32 requests in flight on one connection."""
    import nats

    nc = await nats.connect(nats_url)
    latencies: list[float] = []

    async def worker(until: float, record: bool) -> None:
        while (started := time.perf_counter()) < until:
            await nc.request("ktrdr.ib.status", b"", timeout=5)
            if record:
                latencies.append(time.perf_counter() - started)

    warm = time.perf_counter() + 1.0
    await asyncio.gather(*(worker(warm, False) for _ in range(CONCURRENCY)))
    began = time.perf_counter()
    until = began + seconds
    await asyncio.gather(*(worker(until, True) for _ in range(CONCURRENCY)))
    elapsed = time.perf_counter() - began
    await nc.close()
    return _summary(latencies, elapsed)


async def _http_load(port: int, path: str, seconds: float) -> dict[str, Any]:
    """GET ``path`` on 32 keep-alive connections as fast as answers come."""
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    latencies: list[float] = []
    errors = 0

    async def connection(until: float, record: bool) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while (started := time.perf_counter()) < until:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = _content_length(head)
                await reader.readexactly(length)
                if not head.startswith(b"HTTP/1.1 200"):
                    errors += 1
                if record:
                    latencies.append(time.perf_counter() - started)
        finally:
            writer.close()

    warm = time.perf_counter() + 1.0
    await asyncio.gather(*(connection(warm, False) for _ in range(CONCURRENCY)))
    began = time.perf_counter()
    until = began + seconds
    await asyncio.gather(*(connection(until, True) for _ in range(CONCURRENCY)))
    return _summary(latencies, time.perf_counter() - began) | {"errors": errors}


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    raise ValueError(f"no content-length in {head!r}")


def _summary(latencies: list[float], elapsed: float) -> dict[str, Any]:
    ordered = sorted(latencies)
    return {
        "requests": len(ordered),
        "rps": len(ordered) / elapsed,
        "p50_ms": 1000 * statistics.median(ordered),
        "p99_ms": 1000 * ordered[int(0.99 * (len(ordered) - 1))],
    }


# ---------------------------------------------------------------- orchestration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(port: int, path: str, timeout_s: float = 60.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}{path}", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"nothing answered 200 on :{port}{path}")


def _child(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, *args],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )


def _run_json(*args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, str(HERE), *args], check=True, text=True, capture_output=True
    ).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def _build_httpload(tmp: str) -> str | None:
    """Compile ``httpload.c`` (an epoll load generator); None without a C compiler."""
    binary = Path(tmp) / "httpload"
    try:
        subprocess.run(
            ["cc", "-O2", "-o", str(binary), str(HERE.with_name("httpload.c"))],
            check=True,
            capture_output=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return str(binary)


def _http_figures(httpload: str | None, port: int, path: str, seconds: float) -> dict[str, Any]:
    """Load ``path`` at 32 connections: with the C generator, or the asyncio one without."""
    if httpload is None:
        return _run_json("httpload", str(port), path, str(seconds)) | {"generator": "asyncio"}
    out = subprocess.run(
        [httpload, str(port), path, str(CONCURRENCY), str(seconds), "1"],
        check=True,
        text=True,
        capture_output=True,
    ).stdout
    return dict(json.loads(out)) | {"generator": "httpload.c (epoll)"}


def _stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _serve(server: str, target: str, port: int, env: dict[str, str]) -> subprocess.Popen[str]:
    """Start ``target`` (module:factory or module:app) under granian or uvicorn."""
    factory = target.endswith("()")
    target = target.removesuffix("()")
    if server == "granian":
        args = [
            "-m",
            "granian",
            "--interface",
            "asgi",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--no-ws",
            "--log-level",
            "warning",
            target,
        ]
    else:
        args = [
            "-m",
            "uvicorn",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--log-level",
            "warning",
            "--no-access-log",
            target,
        ]
    if factory:
        args.insert(-1, "--factory")
    return _child(*args, env=env)


HELLO = textwrap.dedent("""
    from litestar import Litestar, get

    @get("/", sync_to_thread=False)
    def hello() -> str:
        return "hello, world"

    app = Litestar([hello], logging_config=None)
""")


def run(quick: bool) -> list[dict[str, Any]]:
    """Run the benchmarks; return the result dicts."""
    from ktrdr_shared.testing.nats_server import NatsServer

    seconds = 2.0 if quick else 5.0
    with tempfile.TemporaryDirectory() as tmp:
        nats = NatsServer(store_dir=Path(tmp) / "js")
        nats.start()
        (Path(tmp) / "hello_app.py").write_text(HELLO)
        env = {k: v for k, v in os.environ.items() if not k.startswith("KTRDR_")}
        env |= {
            "KTRDR_NATS_URL": nats.url,
            "KTRDR_LOG_LEVEL": "WARNING",
            "PYTHONPATH": os.pathsep.join([tmp, env.get("PYTHONPATH", "")]),
        }
        httpload = _build_httpload(tmp)
        responder = _child(str(HERE), "responder", nats.url, env=env)
        try:
            assert responder.stdout is not None and responder.stdout.readline().strip() == "ready"
            figures = _figures(env, seconds, httpload, rounds=2 if quick else 3)
        finally:
            _stop(responder)
            nats.stop()
    return _results(figures, seconds)


def _figures(
    env: dict[str, str], seconds: float, httpload: str | None, rounds: int
) -> dict[str, dict[str, Any]]:
    """Serve every app under both servers at once, then load them in alternating rounds.

    These machines are shared and noisy: alternating the loads lets drift hit every figure
    alike, and each figure is its best round (highest throughput, with that round's p99).
    """
    servers: dict[str, tuple[subprocess.Popen[str], int, str]] = {}
    try:
        for server in ("granian", "uvicorn"):
            for name, target, path in (
                ("hello", "hello_app:app", "/"),
                ("status", "ktrdr_api.serve:app_from_env()", STATUS_PATH),
            ):
                port = _free_port()
                process = _serve(server, target, port, env | {"KTRDR_API_PORT": str(port)})
                servers[f"{name}_{server}"] = (process, port, path)
        for _, port, path in servers.values():
            _wait_http(port, path)
        best: dict[str, dict[str, Any]] = {}
        for _ in range(rounds):
            for key, (_, port, path) in servers.items():
                _keep_best(best, key, _http_figures(httpload, port, path, seconds))
                if key == "status_granian":
                    raw = _run_json("rawload", env["KTRDR_NATS_URL"], str(seconds))
                    _keep_best(best, "raw_nats", raw)
        return best
    finally:
        for process, _, _ in servers.values():
            _stop(process)


def _keep_best(best: dict[str, dict[str, Any]], key: str, figure: dict[str, Any]) -> None:
    if key not in best or figure["rps"] > best[key]["rps"]:
        best[key] = figure


def _results(f: dict[str, dict[str, Any]], seconds: float) -> list[dict[str, Any]]:
    api, raw = f["status_granian"], f["raw_nats"]
    common = {
        "concurrency": CONCURRENCY,
        "seconds_per_round": seconds,
        "best_of_rounds": True,
        "generator": api["generator"],
        "responder": "minimal nats.micro responder on ktrdr.ib.status (own process)",
    }
    return [
        {
            "name": "api.ib_status_throughput",
            "value": api["rps"],
            "baseline": raw["rps"],
            "ratio": api["rps"] / raw["rps"],
            "unit": "req/s",
            "target": ">= 0.4",
            "baseline_name": "raw nats-py request/reply, 32 in flight",
            "errors": api["errors"],
            **common,
        },
        {
            "name": "api.ib_status_p99_ms",
            "value": api["p99_ms"],
            "baseline": raw["p99_ms"],
            "ratio": api["p99_ms"] / raw["p99_ms"],
            "unit": "ms",
            "target": "<= 15 ms",
            "p50_ms": api["p50_ms"],
            "baseline_p50_ms": raw["p50_ms"],
            "baseline_name": "raw nats-py request/reply p99",
            **common,
        },
        {
            "name": "api.server_hello_world_rps",
            "value": f["hello_granian"]["rps"],
            "baseline": f["hello_uvicorn"]["rps"],
            "ratio": f["hello_granian"]["rps"] / f["hello_uvicorn"]["rps"],
            "unit": "req/s",
            "target": "granian > uvicorn",
            "baseline_name": "uvicorn (no extras), same app",
            "p99_ms": f["hello_granian"]["p99_ms"],
            "baseline_p99_ms": f["hello_uvicorn"]["p99_ms"],
            **common,
        },
        {
            "name": "api.server_ib_status_rps",
            "value": api["rps"],
            "baseline": f["status_uvicorn"]["rps"],
            "ratio": api["rps"] / f["status_uvicorn"]["rps"],
            "unit": "req/s",
            "target": "granian > uvicorn",
            "baseline_name": "the gateway under uvicorn (no extras)",
            "p99_ms": api["p99_ms"],
            "baseline_p99_ms": f["status_uvicorn"]["p99_ms"],
            **common,
        },
    ]


def main(argv: list[str]) -> None:
    """Run one party of the benchmark (used by ``run`` in subprocesses)."""
    role, *args = argv
    if role == "responder":
        asyncio.run(_responder(args[0]))
    elif role == "rawload":
        print(json.dumps(asyncio.run(_raw_load(args[0], float(args[1])))))
    elif role == "httpload":
        print(json.dumps(asyncio.run(_http_load(int(args[0]), args[1], float(args[2])))))
    else:
        raise SystemExit(f"unknown role {role!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
