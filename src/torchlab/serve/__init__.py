"""Serve a run or an export over HTTP: FastAPI + uvicorn with dynamic batching.

    torchlab serve runs/digits/2026-11-25T10-00-00 --port 8000
    torchlab serve runs/digits/2026-11-25T10-00-00/exports/onnx

Binds 127.0.0.1 unless told otherwise; see :class:`~torchlab.serve.settings.ServeSettings` for
batching, limits and the optional API key.
"""

from __future__ import annotations

import gc
import ipaddress
from pathlib import Path

from torchlab.notices import notice
from torchlab.serve.app import create_app
from torchlab.serve.server import LOOPBACK, server_config
from torchlab.serve.settings import ServeSettings


def serve(
    path: str | Path,
    *,
    host: str = LOOPBACK,
    port: int = 8000,
    settings: ServeSettings | None = None,
    log_level: str = "info",
    access_log: bool = False,
    trust_code: bool = False,
) -> None:
    """Load a run or export directory once, then answer HTTP requests until interrupted.

    ``trust_code`` lets the folder import or unpickle code (``--trust-code``).
    """
    import uvicorn

    from torchlab.engine.predict import load_predictor
    from torchlab.memory import keep_freed_memory

    keep_freed_memory()
    settings = settings or ServeSettings()
    if not is_loopback(host) and settings.api_key is None:
        notice(
            f"Serving on {host} without an API key: anyone who reaches this address can use "
            "the model. Pass --api-key (or TORCHLAB_API_KEY) to require one.",
        )
    app = create_app(load_predictor(path, trust_code), settings)
    # torch, the model and the web stack leave ~500k long-lived objects; full garbage
    # collections walking them stalled every in-flight request for ~300 ms about once a
    # second under load. Frozen, they are never scanned again (benchmarks/RESULTS.md).
    gc.collect()
    gc.freeze()
    config = server_config(app, host=host, port=port, log_level=log_level, access_log=access_log)
    uvicorn.Server(config).run()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


__all__ = ["ServeSettings", "create_app", "serve", "server_config"]
