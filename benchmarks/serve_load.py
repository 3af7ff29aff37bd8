"""The HTTP server under a bounded load test on loopback, beside TorchServe.

Trains the digits CNN briefly and exports it to ONNX; then ``torchlab serve`` (batching on:
32 rows, 5 ms) answers ``--clients`` concurrent keep-alive connections (each sends a new
request as soon as the last one is answered) for ``--seconds`` after ``--warmup`` seconds
that are not counted, once per request path: ``json`` (``POST /predict``, one base64 PNG in
``{"images": [...]}``) and ``binary`` (``POST /predict/image``, the PNG itself as the body).
The load generator is a raw HTTP/1.1 asyncio client (on uvloop when installed) in this one
process, pinned to the first core, and the server to the others, so the clients do not eat
the server's CPU. With ``--unbatched`` the same server also runs with ``--max-batch 1``;
with ``--torchserve`` the same model runs under TorchServe (TorchScript, batch 32, 5 ms),
sent the PNG as the body, and with ``--litserve`` the same ONNX export under LitServe (batch
32, 5 ms; ``litserve_digits.py``, in its own venv), sent the JSON body.

Prints requests/s, p50/p99 latency, the server's CPU time per request and its resident
memory at the end (TorchServe: its Java front end and Python worker together), any non-200
answers, and a verdict against the targets: >= 2,500 requests/s with p99 < 50 ms on the
server's one core, ahead of TorchServe on both, and no 5xx.

    .venv/bin/python benchmarks/serve_load.py [--clients 64] [--seconds 15] [--warmup 2]
        [--runtimes eager,onnx] [--paths json,binary] [--unbatched] [--no-pin]
        [--torchserve] [--litserve] [--check]

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
import psutil
from PIL import Image
from sklearn.datasets import load_digits

TARGET_RPS, TARGET_P99_MS = 2500.0, 50.0
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


def run_load(process: subprocess.Popen, *load_args: Any) -> dict:  # type: ignore[type-arg]
    """:func:`load` against a started server, with the CPU seconds its process tree spent
    per request and its resident memory at the end."""
    tree = psutil.Process(process.pid)

    def cpu() -> float:
        return sum(sum(p.cpu_times()[:2]) for p in [tree, *tree.children(recursive=True)])

    before = cpu()
    result = run(load(*load_args))
    answered = sum(result["statuses"].values())
    result["cpu ms/request"] = (cpu() - before) * 1e3 / max(1, answered)
    processes = [tree, *tree.children(recursive=True)]
    result["rss MiB"] = sum(p.memory_info().rss for p in processes) / 2**20
    return result


def run(coroutine: Any) -> Any:
    """The client's event loop: uvloop when installed, as for the servers."""
    if find_spec("uvloop"):
        import uvloop

        return uvloop.run(coroutine)
    return asyncio.run(coroutine)


def torchlab_mode(
    model: Path, extra: list[str], path: str, requests: list[bytes], args, cores
) -> dict:  # type: ignore[no-untyped-def,type-arg]
    command = [str(BIN / "torchlab"), "serve", str(model), "--port", str(args.port), *extra]
    env = {**os.environ, "OMP_NUM_THREADS": str(len(cores) if cores else os.cpu_count())}
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
        start_new_session=True, preexec_fn=pinned(cores),
    )  # fmt: skip
    try:
        wait(f"http://127.0.0.1:{args.port}/ready", process)
        load_args = (args.port, path, requests, args.clients, args.seconds, args.warmup)
        return run_load(process, *load_args)
    finally:
        stop(process)


def torchserve_mode(mar: Path, raw: list[bytes], args, folder: Path, cores) -> dict:  # type: ignore[no-untyped-def,type-arg]
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
        preexec_fn=pinned(cores),  # the server's cores, as torchlab's: Java and its Python worker
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
        return run_load(process, ports[0], path, requests, args.clients, args.seconds, args.warmup)
    finally:
        stop(process)


LITSERVE_VENV = Path(__file__).parent / ".venv-litserve"


def litserve_python() -> Path:
    """LitServe's own environment (no torchlab dependency), made once, with this
    environment's ONNX Runtime, Pillow and NumPy versions."""
    python = LITSERVE_VENV / "bin" / "python"
    if not python.exists():
        from importlib.metadata import version

        subprocess.run([sys.executable, "-m", "venv", str(LITSERVE_VENV)], check=True)
        pins = [f"{name}=={version(name)}" for name in ("onnxruntime", "pillow", "numpy")]
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "litserve", *pins], check=True
        )
    return python


def litserve_mode(export: Path, requests: list[bytes], args, cores) -> dict:  # type: ignore[no-untyped-def,type-arg]
    """LitServe 0.2 serving the same ONNX export (``litserve_digits.py``), batch 32, 5 ms."""
    script = Path(__file__).parent / "litserve_digits.py"
    command = [str(litserve_python()), str(script), str(export), str(args.port)]
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "OMP_NUM_THREADS": "1"}, start_new_session=True,
        preexec_fn=pinned(cores),
    )  # fmt: skip
    try:
        wait(f"http://127.0.0.1:{args.port}/health", process)
        load_args = (args.port, "/predict", requests, args.clients, args.seconds, args.warmup)
        return run_load(process, *load_args)
    finally:
        stop(process)


BATCHED = ["--max-batch", "32", "--max-wait-ms", "5"]
UNBATCHED = ["--max-batch", "1", "--max-wait-ms", "0"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=15, help="measured seconds per mode")
    parser.add_argument(
        "--warmup", type=float, default=2, help="seconds of load before measuring (not counted)"
    )
    parser.add_argument("--runtimes", default="onnx", help="eager (run dir) and/or onnx")
    parser.add_argument("--paths", default="json,binary", help="json and/or binary requests")
    parser.add_argument("--unbatched", action="store_true", help="also run with --max-batch 1")
    parser.add_argument("--port", type=int, default=free_port())
    parser.add_argument("--no-pin", action="store_true", help="do not split the cores")
    parser.add_argument("--torchserve", action="store_true", help="also load-test TorchServe")
    parser.add_argument(
        "--litserve", action="store_true",
        help="also load-test LitServe (its own venv, benchmarks/.venv-litserve, made once)",
    )  # fmt: skip
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)

    import torchlab
    from torchlab.api import export

    raw = images()
    bodies = [json.dumps({"images": [base64.b64encode(d).decode()]}).encode() for d in raw]
    paths = {
        "json": ("/predict", [request_bytes(args.port, "/predict", b, "application/json") for b in bodies]),
        "binary": ("/predict/image", [request_bytes(args.port, "/predict/image", d, "image/png") for d in raw]),
    }  # fmt: skip
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
            for kind in args.paths.split(","):
                path, requests = paths[kind]
                modes = {"batching on": BATCHED} | (
                    {"batching off": UNBATCHED} if args.unbatched else {}
                )
                for mode, extra in modes.items():
                    name = f"torchlab serve, {mode}, {kind} ({path})"
                    result = torchlab_mode(
                        models[runtime], extra, path, requests, args, server_cores
                    )
                    results[runtime, name] = result
                    print(runtime, name, result, flush=True)
        if args.litserve:
            name = "LitServe 0.2, batch 32, 5 ms, json (/predict)"
            results["onnx-litserve", name] = litserve_mode(
                models["onnx"], paths["json"][1], args, server_cores
            )
        if args.torchserve:
            mar = export(run, "mar") / "model.mar"
            name = "TorchServe 0.12, batch 32, 5 ms, binary (/predictions/model)"
            results["torchscript", name] = torchserve_mode(mar, raw, args, folder, server_cores)
    print(f"# load after {os.getloadavg()[0]:.2f}")
    return verdict(results, args.check)


def verdict(results: dict[tuple[str, str], dict], check: bool) -> int:  # type: ignore[type-arg]
    print(
        "| runtime | server and path | requests/s | p50 ms | p99 ms | server CPU ms/request | server RSS MiB | answers |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for (runtime, name), r in results.items():
        print(
            f"| {runtime} | {name} | {r['requests/s']:,.0f} | {r['p50 ms']:.1f} | "
            f"{r['p99 ms']:.1f} | {r['cpu ms/request']:.2f} | {r['rss MiB']:,.0f} | {r['statuses']} |"
        )
    peers = [r for (_, name), r in results.items() if not name.startswith("torchlab")]
    met = []
    for (runtime, name), r in results.items():
        if not name.startswith("torchlab") or "batching on" not in name:
            continue
        ahead = all(r["requests/s"] > p["requests/s"] and r["p99 ms"] < p["p99 ms"] for p in peers)
        ok = r["requests/s"] >= TARGET_RPS and r["p99 ms"] < TARGET_P99_MS and ahead
        met.append(ok)
        print(
            f"VERDICT {runtime}, {name}: {r['requests/s']:,.0f} requests/s (target >= "
            f"{TARGET_RPS:,.0f}), p99 {r['p99 ms']:.1f} ms (target < {TARGET_P99_MS:g}), "
            f"{'ahead of' if ahead else 'not ahead of'} {len(peers)} peer(s) on both"
            f"{'' if peers else ' (not run)'}: {'MET' if ok else 'NOT MET'}"
        )
    errors = sum(
        n
        for r in results.values()
        for s, n in r["statuses"].items()
        if not (isinstance(s, int) and s < 500)
    )
    print(
        f"VERDICT 5xx or failed answers: {errors} (target 0): {'MET' if not errors else 'NOT MET'}"
    )
    return 1 if check and (errors or not all(met)) else 0


if __name__ == "__main__":
    sys.exit(main())
