"""The HTTP server under a bounded load test on loopback: dynamic batching on and off.

Trains the digits CNN briefly, exports it to ONNX, then for each mode starts
``torchlab serve`` in its own process on 127.0.0.1 and drives it with ``--clients``
concurrent clients (one asyncio httpx client each, a new request as soon as the last one
answered) for ``--seconds``. Reports requests/s, p50/p99 latency and any non-200 answers.
With ``--torchserve`` the same model runs under TorchServe (its own batching, batch 32,
5 ms) as a third mode.

    .venv/bin/python benchmarks/serve_load.py [--clients 64] [--seconds 20] [--torchserve] [--check]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
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
from pathlib import Path

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


async def load(url: str, bodies: list[dict], clients: int, seconds: float) -> dict:  # type: ignore[type-arg]
    latencies: list[float] = []
    statuses: Counter[int | str] = Counter()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        stop = time.perf_counter() + seconds

        async def worker(i: int) -> None:
            n = i
            while time.perf_counter() < stop:
                start = time.perf_counter()
                try:
                    answer = await client.post(url, **bodies[n % len(bodies)])
                    statuses[answer.status_code] += 1
                except httpx.HTTPError as exc:
                    statuses[type(exc).__name__] += 1
                latencies.append(time.perf_counter() - start)
                n += clients

        started = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(clients)))
        elapsed = time.perf_counter() - started
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


def torchlab_mode(export_dir: Path, extra: list[str], bodies: list[dict], args) -> dict:  # type: ignore[no-untyped-def,type-arg]
    port = free_port()
    command = [str(BIN / "torchlab"), "serve", str(export_dir), "--port", str(port), *extra]
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        wait(f"http://127.0.0.1:{port}/ready", process)
        return asyncio.run(
            load(f"http://127.0.0.1:{port}/predict", bodies, args.clients, args.seconds)
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
        bodies = [{"content": data} for data in raw]
        return asyncio.run(
            load(
                f"http://127.0.0.1:{ports[0]}/predictions/model",
                bodies,
                args.clients,
                args.seconds,
            )
        )
    finally:
        stop(process)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--torchserve", action="store_true", help="also load-test TorchServe")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)

    import torchlab
    from torchlab.exporters import export

    raw = images()
    bodies = [{"json": {"images": [base64.b64encode(data).decode()]}} for data in raw]
    print(
        f"# {os.cpu_count()} cores, {args.clients} clients x {args.seconds:g} s, load before {os.getloadavg()[0]:.2f}"
    )
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        run = torchlab.train(
            "digits", {"trainer.max_epochs": 2, "trainer.progress": "none"}, output_dir=folder
        )
        onnx = export(run, "onnx")
        modes = {
            "batching on (max 32 rows, 5 ms)": ["--max-batch", "32", "--max-wait-ms", "5"],
            "batching off": ["--max-batch", "1", "--max-wait-ms", "0"],
        }
        for name, extra in modes.items():
            results[name] = torchlab_mode(onnx, extra, bodies, args)
            print(name, results[name], flush=True)
        if args.torchserve:
            mar = export(run, "mar") / "model.mar"
            results["TorchServe 0.12 (TorchScript, batch 32, 5 ms)"] = torchserve_mode(
                mar, raw, args, folder
            )
    print(f"# load after {os.getloadavg()[0]:.2f}")
    print("| server | requests/s | p50 ms | p99 ms | answers |")
    print("| --- | ---: | ---: | ---: | --- |")
    for name, r in results.items():
        print(
            f"| {name} | {r['requests/s']:,.0f} | {r['p50 ms']:.1f} | {r['p99 ms']:.1f} | {r['statuses']} |"
        )
    on, off = results["batching on (max 32 rows, 5 ms)"], results["batching off"]
    speedup = on["requests/s"] / off["requests/s"]
    print(
        f"speed-up of batching: {speedup:.2f}x (target >= {TARGET_SPEEDUP}x); p99 {on['p99 ms']:.1f} ms (target < {TARGET_P99_MS} ms)"
    )
    errors = sum(n for r in results.values() for s, n in r["statuses"].items() if s != 200)
    missed = speedup < TARGET_SPEEDUP or on["p99 ms"] >= TARGET_P99_MS or errors
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
