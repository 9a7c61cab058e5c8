"""Chart drawing in a process of its own.

vl-convert holds the GIL while it draws (measured: the event loop stalled for the whole of a
render run through `asyncio.to_thread`, a second and more for the first one, which starts its
JavaScript engine and loads fonts), so drawing in a thread of the server would stop every
request meanwhile. Images are drawn in one worker process instead ("spawn": a fresh
interpreter that imports only this module and vl-convert); the server's loop only waits for
the bytes. The worker warms up as it starts (`_start_worker`), and `start()` starts it at
the server's start, so the first image is not the one paying for that. A worker whose server
died (killed outright, so it could not stop the worker) leaves by itself within a second.

One worker per serving process: drawings queue behind each other (tens of milliseconds each)
rather than compete for the machine's cores with the queries. It costs the memory of a second
Python process with vl-convert loaded (about 150 MB).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

log = logging.getLogger(__name__)

WARM_SPEC: dict[str, Any] = {
    "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
    "data": {"values": [{"Model": "a", "Value": 1.0}, {"Model": "b", "Value": 2.0}]},
    "mark": "bar",
    "encoding": {
        "y": {"field": "Model", "type": "nominal"},
        "x": {"field": "Value", "type": "quantitative"},
    },
    "config": {"font": "DejaVu Sans"},
}


def draw(fmt: str, spec: dict[str, Any], scale: float) -> bytes:
    """The picture of `spec` as PNG or SVG bytes (runs in the worker)."""
    import vl_convert

    if fmt == "png":
        return bytes(vl_convert.vegalite_to_png(spec, scale=scale))
    return vl_convert.vegalite_to_svg(spec).encode()


def _follow(parent: int) -> None:
    # a server killed outright (SIGKILL, a crash) cannot stop its worker: the worker leaves
    # when it is orphaned, rather than keep its memory for nothing
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def _start_worker(parent: int) -> None:
    """The worker's initializer: follow the server's life, then warm up."""
    threading.Thread(target=_follow, args=(parent,), daemon=True, name="follow-server").start()
    draw("png", WARM_SPEC, 1.0)
    draw("svg", WARM_SPEC, 1.0)


def _ping() -> float:
    return time.perf_counter()


_pool: ProcessPoolExecutor | None = None


def _executor() -> ProcessPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(os.getpid(),),
        )
    return _pool


async def start() -> float:
    """Start the worker (it warms up as it starts) and wait for it, off the event loop;
    returns the seconds it took. Called in the background at the server's start."""
    started = time.perf_counter()
    await asyncio.get_running_loop().run_in_executor(_executor(), _ping)
    return time.perf_counter() - started


async def render(fmt: str, spec: dict[str, Any], scale: float) -> bytes:
    """Draw in the worker; a worker that died is replaced once."""
    global _pool
    loop = asyncio.get_running_loop()
    try:
        return await loop.run_in_executor(_executor(), draw, fmt, spec, scale)
    except BrokenProcessPool:
        log.warning("the chart worker died; starting another")
        _pool = None
        return await loop.run_in_executor(_executor(), draw, fmt, spec, scale)


def stop() -> None:
    """Stop the worker (tests and the CLI's end; the server keeps one for its life)."""
    global _pool
    if _pool is not None:
        _pool.shutdown(wait=False, cancel_futures=True)
        _pool = None
