"""Distributed data parallel (DDP) under ``torchrun``: the same config on 1..N processes.

``torchrun --nproc-per-node N -m torchlab train CONFIG`` sets ``RANK``, ``LOCAL_RANK`` and
``WORLD_SIZE``; :func:`init_world` joins the process group (NCCL on CUDA, gloo on CPU) with
a timeout, so a lost rank fails the job instead of hanging it. Every rank trains on its own
shard of each epoch's order; gradients are averaged by DDP; losses and metrics are reduced
across ranks; files are written by rank 0 while every rank takes part in each collective.

A rank that fails says why where the others and torchrun can read it (see
:func:`failures_named`): the ranks that lose it stop with one line naming that rank and
its error, and torchrun's summary shows the error instead of a link to its docs.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from torchlab.errors import ConfigError, TorchlabError

FAILURE_KEY = "failure"  # in this attempt's store: "rank R: Error: message" of the first to fail
_store: dist.Store | None = None  # this attempt's store, once the process group is up


class RankFailed(TorchlabError):
    """Another rank of the job failed, so this one cannot go on."""

    exit_code = 2


class _Stopped(Exception):
    """torchrun sent SIGTERM: it stops the other ranks when one of them has failed."""


@dataclass(frozen=True)
class World:
    """This process's place among the training processes."""

    rank: int = 0
    local_rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def world_from_env() -> World:
    """The world ``torchrun`` describes in the environment (a single process without it)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World()
    return World(int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0")), size)


def init_world(device: torch.device, timeout_s: float) -> tuple[World, torch.device]:
    """Join the process group when started by ``torchrun``; return the world and this rank's device."""
    world = world_from_env()
    if not world.distributed:
        return world, device
    if device.type == "cuda":
        if torch.cuda.device_count() <= world.local_rank:
            raise ConfigError(
                f"Rank {world.rank} wants cuda:{world.local_rank} but only "
                f"{torch.cuda.device_count()} GPU(s) are visible; lower --nproc-per-node."
            )
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        global _store
        backend = "nccl" if device.type == "cuda" else "gloo"
        timeout = timedelta(seconds=timeout_s)
        _store = attempt_store(world, timeout)
        dist.init_process_group(
            backend,
            timeout=timeout,
            store=_store,
            rank=world.rank,
            world_size=world.size,
            device_id=device if device.type == "cuda" else None,
        )
    return world, device


def attempt_store(world: World, timeout: timedelta) -> dist.Store:
    """torchrun's store, with keys private to this attempt of the job.

    After a failure torchrun restarts every worker against the same store; without a
    prefix, gloo reads the addresses the failed attempt's ranks published and the restart
    cannot connect ("Connection refused").
    """
    store = dist.TCPStore(
        os.environ["MASTER_ADDR"],
        int(os.environ["MASTER_PORT"]),
        world.size,
        is_master=world.rank == 0 and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True",
        timeout=timeout,
    )
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    return dist.PrefixStore(f"torchlab/attempt-{attempt}", store)


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over ranks in place (a no-op in a single process)."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def gather_objects(value: Any) -> list[Any]:
    """``[value of rank 0, value of rank 1, ...]`` on every rank (``[value]`` alone)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [value]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out


def broadcast_object(value: Any) -> Any:
    """Rank 0's ``value`` on every rank."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def shard(order: torch.Tensor, world: World, pad: bool) -> torch.Tensor:
    """This rank's share of an epoch's order: every ``size``-th sample from ``rank``.

    Training pads the order by repeating its start so every rank gets the same number of
    batches (DDP needs every rank in every backward); evaluation does not pad, so no
    sample is counted twice. The ranks' shares of a contiguous chunk of ``size * b``
    samples are exactly that chunk: N processes at batch ``b`` see what one process at
    batch ``N * b`` sees.
    """
    if not world.distributed:
        return order
    if pad and len(order) % world.size:
        extra = world.size - len(order) % world.size
        order = torch.cat([order, order[:extra]])
    return order[world.rank :: world.size]


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def failures_named(world: World) -> Iterator[None]:
    """Under ``torchrun``: a failing rank publishes its error; the ranks that lose it name it.

    The error goes to this attempt's store (for the other ranks) and to torchrun's error
    file (for its summary). A rank whose collective breaks because a peer went away, or
    that torchrun stops with SIGTERM for that reason, raises :class:`RankFailed` with the
    first published error, or says that the lost rank died without one (killed, out of memory).
    """
    if not world.distributed:
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_stopped)
    try:
        yield
    except BaseException as exc:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the line below must get out whole
        if isinstance(exc, (_Stopped, RankFailed)) or lost_a_peer(exc):
            failed = RankFailed(lost_rank_message(world, exc))
            write_error_file(f"{type(failed).__name__}: {failed}")
            raise failed from None
        message = f"rank {world.rank}: {type(exc).__name__}: {exc}"
        with contextlib.suppress(Exception):  # the store may be gone with the failure
            if _store is not None:
                _store.compare_set(FAILURE_KEY, "", message)
        write_error_file(f"{type(exc).__name__}: {exc}")
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)


def _raise_stopped(signum: int, frame: Any) -> None:
    raise _Stopped()


def lost_a_peer(exc: BaseException) -> bool:
    """Whether ``exc`` is a collective that broke because another rank went away."""
    gone = ("Connection closed by peer", "Connection reset by peer", "Broken pipe")
    return isinstance(exc, dist.DistError) or (
        isinstance(exc, RuntimeError) and any(text in str(exc) for text in gone)
    )


def lost_rank_message(world: World, exc: BaseException) -> str:
    """Which rank failed and why, as it published it; or that it died without a word."""
    cause = published_failure()
    if cause is not None:
        name, _, error = cause.partition(": ")
        return f"{name.capitalize()} of the job failed, so rank {world.rank} stopped: {error}"
    detail = str(exc).splitlines()[0][:200] if str(exc) else "stopped by torchrun"
    return (
        f"Rank {world.rank} lost another rank of the job, which ended without an error "
        f"message (killed, or out of memory?): {detail}; torchrun's summary names its rank "
        "and exit code."
    )


def published_failure(wait_s: float = 3.0) -> str | None:
    """The first failing rank's message, waiting ``wait_s`` for a rank that is still saying it."""
    deadline = time.monotonic() + wait_s
    while _store is not None:
        with contextlib.suppress(Exception):  # the store dies with torchrun's agent
            if _store.check([FAILURE_KEY]):
                return _store.get(FAILURE_KEY).decode()
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.1)
    return None


def write_error_file(message: str) -> None:
    """Put ``message`` where torchrun's failure summary reads it (``TORCHELASTIC_ERROR_FILE``)."""
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if path:
        with contextlib.suppress(OSError), open(path, "w") as f:
            # The layout torchrun's own ErrorHandler writes; it shows py_callstack.
            extra = {"py_callstack": message, "timestamp": str(int(time.time()))}
            json.dump({"message": {"message": message, "extraInfo": extra}}, f)
