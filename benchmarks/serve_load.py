"""The HTTP server under a bounded load test on loopback: dynamic batching on and off.

Trains the digits CNN briefly and exports it to ONNX; then for each runtime (``eager``: the
run directory in PyTorch, ``onnx``: the export in ONNX Runtime) and each mode (batching on,
and the same server with ``--max-batch 1``) starts ``torchlab serve`` in its own process on
127.0.0.1 and drives it with ``--clients`` concurrent keep-alive connections (each sends a
new request as soon as the last one is answered) for ``--seconds`` after ``--warmup``
seconds that are not counted (connections opening, first batches). Every request is one
base64 PNG. The load generator is a raw HTTP/1.1 asyncio client in this one process, pinned
to the first core, and the server to the others, so the clients do not eat the server's
CPU. Prints requests/s, p50/p99 latency, any non-200 answers and a verdict per runtime
against the targets (batching >= 3x the unbatched requests/s with p99 < 100 ms; no 5xx).
With ``--torchserve`` the same model also runs under TorchServe (batch 32, 5 ms).

    .venv/bin/python benchmarks/serve_load.py [--clients 64] [--seconds 15] [--warmup 2]
        [--runtimes eager,onnx] [--no-pin] [--torchserve] [--check]

uvicorn parses HTTP with httptools and runs uvloop when they are installed
(``uvicorn[standard]``); the printed header says which.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import io
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

TARGET_SPEEDUP, TARGET_P99_MS = 3.0, 100.0
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def images() -> list[bytes]:
    out = []
    for image in load_digits().images[:256]:
        buffer = io.BytesIO()
        Image.fromarray((image * 16).clip(0, 255).astype(np.uint8)).save(buffer, "PNG")
        out.append(buffer.getvalue())
    return out


def request_bytes(port: int, path: str, body: bytes, content_type: str) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n"
    )
    return head.encode() + body


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> int:
    """One request on a keep-alive connection; the answer's status code."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)
    return status


async def load(  # type: ignore[type-arg]
    port: int, path: str, requests: list[bytes], clients: int, seconds: float, warmup: float
) -> dict:
    """``clients`` keep-alive connections, each sending its next request as soon as the
    last is answered, for ``warmup`` + ``seconds``; latencies and requests/s count only the
    requests sent after the warm-up (connections opened, first batches run), statuses all.
    A raw HTTP/1.1 client in one process: cheap enough that the load generator does not
    starve the server it measures."""
    # This process trained the model (torch and torchlab are loaded): freeze those objects so
    # that full garbage collections do not pause the clients mid-measurement.
    gc.collect()
    gc.freeze()
    latencies: list[float] = []
    statuses: Counter[int | str] = Counter()
    measured = time.perf_counter() + warmup
    stop = measured + seconds

    async def worker(i: int) -> None:
        n = i
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < stop:
                start = time.perf_counter()
                try:
                    status: int | str = await exchange(reader, writer, requests[n % len(requests)])
                except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                    status = type(exc).__name__
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                statuses[status] += 1  # every answer, warm-up included, for the no-5xx check
                if start >= measured:
                    latencies.append(time.perf_counter() - start)
                n += clients
        finally:
            writer.close()

    await asyncio.gather(*(worker(i) for i in range(clients)))
    elapsed = time.perf_counter() - measured
    latencies.sort()
    return {
        "requests/s": len(latencies) / elapsed,
        "p50 ms": statistics.median(latencies) * 1e3,
        "p99 ms": latencies[int(0.99 * (len(latencies) - 1))] * 1e3,
        "statuses": dict(statuses),
    }


def wait(url: str, process: subprocess.Popen, timeout: float = 120) -> None:  # type: ignore[type-arg]
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} not ready after {timeout} s")


def stop(process: subprocess.Popen) -> None:  # type: ignore[type-arg]
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def pinned(cores: set[int] | None) -> Any:
    """A ``preexec_fn`` that pins the child (and every thread it starts) to ``cores``."""
    return None if cores is None else (lambda: os.sched_setaffinity(0, cores))


def torchlab_mode(model: Path, extra: list[str], requests: list[bytes], args, cores) -> dict:  # type: ignore[no-untyped-def,type-arg]
    command = [str(BIN / "torchlab"), "serve", str(model), "--port", str(args.port), *extra]
    env = {**os.environ, "OMP_NUM_THREADS": str(len(cores) if cores else os.cpu_count())}
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
        start_new_session=True, preexec_fn=pinned(cores),
    )  # fmt: skip
    try:
        wait(f"http://127.0.0.1:{args.port}/ready", process)
        return asyncio.run(
            load(args.port, "/predict", requests, args.clients, args.seconds, args.warmup)
        )
    finally:
        stop(process)


def torchserve_mode(mar: Path, raw: list[bytes], args, folder: Path) -> dict:  # type: ignore[no-untyped-def,type-arg]
    ports = [free_port() for _ in range(3)]
    store = folder / "store"
    store.mkdir()
    shutil.copy(mar, store / "digits.mar")
    config = folder / "config.properties"
    models = (
        '{"model": {"1.0": {"defaultVersion": true, "marName": "digits.mar", '
        '"minWorkers": 1, "maxWorkers": 1, "batchSize": 32, "maxBatchDelay": 5}}}'
    )
    config.write_text(
        f"inference_address=http://127.0.0.1:{ports[0]}\n"
        f"management_address=http://127.0.0.1:{ports[1]}\n"
        f"metrics_address=http://127.0.0.1:{ports[2]}\nmodel_store={store}\n"
        f"load_models=digits.mar\nmodels={models}\ndisable_token_authorization=true\n"
    )
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    process = subprocess.Popen(
        [str(BIN / "torchserve"), "--start", "--foreground", "--ncs", "--ts-config", str(config)],
        cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        wait(f"http://127.0.0.1:{ports[1]}/models/model", process)
        probe = httpx.post(
            f"http://127.0.0.1:{ports[0]}/predictions/model", content=raw[0], timeout=60
        )
        probe.raise_for_status()
        info = httpx.get(f"http://127.0.0.1:{ports[1]}/models/model").json()[0]
        print(f"# TorchServe batchSize {info['batchSize']}, maxBatchDelay {info['maxBatchDelay']}")
        path = "/predictions/model"
        requests = [request_bytes(ports[0], path, data, "image/png") for data in raw]
        return asyncio.run(load(ports[0], path, requests, args.clients, args.seconds, args.warmup))
    finally:
        stop(process)


MODES = {
    "batching on (max 32 rows, 5 ms)": ["--max-batch", "32", "--max-wait-ms", "5"],
    "batching off (--max-batch 1)": ["--max-batch", "1", "--max-wait-ms", "0"],
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=15, help="measured seconds per mode")
    parser.add_argument(
        "--warmup", type=float, default=2, help="seconds of load before measuring (not counted)"
    )
    parser.add_argument("--runtimes", default="eager,onnx", help="eager (run dir) and/or onnx")
    parser.add_argument("--port", type=int, default=free_port())
    parser.add_argument("--no-pin", action="store_true", help="do not split the cores")
    parser.add_argument("--torchserve", action="store_true", help="also load-test TorchServe")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)

    import torchlab
    from torchlab.api import export

    raw = images()
    bodies = [json.dumps({"images": [base64.b64encode(d).decode()]}).encode() for d in raw]
    requests = [request_bytes(args.port, "/predict", b, "application/json") for b in bodies]
    cores = sorted(os.sched_getaffinity(0))
    # The server gets every core but the first; the load generator (this process) the first.
    server_cores = None if args.no_pin or len(cores) < 2 else set(cores[1:])
    print(
        f"# {len(cores)} cores (server on {sorted(server_cores) if server_cores else 'all'}), "
        f"{args.clients} clients x {args.seconds:g} s after {args.warmup:g} s of warm-up, load before {os.getloadavg()[0]:.2f}, "
        f"uvicorn http {'httptools' if find_spec('httptools') else 'h11'}, "
        f"loop {'uvloop' if find_spec('uvloop') else 'asyncio'}"
    )
    results: dict[tuple[str, str], dict] = {}  # type: ignore[type-arg]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        run = torchlab.train(
            "digits", {"trainer.max_epochs": 2, "trainer.progress": "none"}, output_dir=folder
        )
        models = {"eager": run.dir, "onnx": export(run, "onnx")}
        if server_cores:
            os.sched_setaffinity(0, {cores[0]})
        for runtime in args.runtimes.split(","):
            for name, extra in MODES.items():
                result = torchlab_mode(models[runtime], extra, requests, args, server_cores)
                results[runtime, name] = result
                print(runtime, name, result, flush=True)
        if args.torchserve:
            mar = export(run, "mar") / "model.mar"
            name = "TorchServe 0.12 (TorchScript, batch 32, 5 ms)"
            results["torchscript", name] = torchserve_mode(mar, raw, args, folder)
    print(f"# load after {os.getloadavg()[0]:.2f}")
    return verdict(results, args.check)


def verdict(results: dict[tuple[str, str], dict], check: bool) -> int:  # type: ignore[type-arg]
    print("| runtime | server | requests/s | p50 ms | p99 ms | answers |")
    print("| --- | --- | ---: | ---: | ---: | --- |")
    for (runtime, name), r in results.items():
        print(
            f"| {runtime} | {name} | {r['requests/s']:,.0f} | {r['p50 ms']:.1f} | "
            f"{r['p99 ms']:.1f} | {r['statuses']} |"
        )
    met = []
    on_name, off_name = MODES
    for runtime in dict.fromkeys(runtime for runtime, _ in results):
        if (runtime, on_name) not in results:
            continue
        on, off = results[runtime, on_name], results[runtime, off_name]
        speedup = on["requests/s"] / off["requests/s"]
        ok = speedup >= TARGET_SPEEDUP and on["p99 ms"] < TARGET_P99_MS
        met.append(ok)
        print(
            f"VERDICT {runtime}: batching {speedup:.2f}x the unbatched requests/s (target >= "
            f"{TARGET_SPEEDUP:g}x), p99 {on['p99 ms']:.1f} ms (target < {TARGET_P99_MS:g} ms): "
            f"{'MET' if ok else 'NOT MET'}"
        )
    errors = sum(n for r in results.values() for s, n in r["statuses"].items() if s != 200)
    print(f"VERDICT non-200 answers: {errors} (target 0): {'MET' if not errors else 'NOT MET'}")
    return 1 if check and (errors or not all(met)) else 0


if __name__ == "__main__":
    sys.exit(main())
