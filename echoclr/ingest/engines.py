"""Where ingest tasks run: a local process pool (the default) or a Dask distributed cluster.

An engine maps a picklable function over a list of task arguments and yields ``(task position, result)`` as tasks
finish, in any order. Nothing here knows about videos; :mod:`echoclr.ingest.runner` does the bookkeeping.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

ENGINES = ("local", "dask")


def run_tasks(
    function: Callable[..., Any],
    tasks: Sequence[tuple[Any, ...]],
    *,
    engine: str = "local",
    workers: int = 1,
    scheduler: str | None = None,
) -> Iterator[tuple[int, Any]]:
    """Run ``function(*task)`` for every task; yield ``(position, result)`` as each finishes.

    Args:
        engine: ``"local"`` (a spawn process pool of ``workers``; 1 runs in this process) or ``"dask"``
            (``dask.distributed``: the scheduler at ``scheduler``, or a ``LocalCluster`` of ``workers`` processes).
        scheduler: a Dask scheduler address (``tcp://host:8786``); only with ``engine="dask"``.

    Raises:
        ValueError: an unknown engine, or ``scheduler`` without the dask engine.
        ImportError: the dask engine without ``dask[distributed]`` installed (``pip install 'echoclr[scale]'``).
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if scheduler and engine != "dask":
        raise ValueError("--scheduler needs --engine dask")
    if engine == "dask":
        yield from _run_dask(function, tasks, workers=workers, scheduler=scheduler)
    elif workers <= 1:
        for i, task in enumerate(tasks):
            yield i, function(*task)
    else:
        context = multiprocessing.get_context("spawn")  # zarr runs an event-loop thread: never fork after it starts
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures = {pool.submit(function, *task): i for i, task in enumerate(tasks)}
            for future in as_completed(futures):
                yield futures[future], future.result()


def _run_dask(
    function: Callable[..., Any], tasks: Sequence[tuple[Any, ...]], *, workers: int, scheduler: str | None
) -> Iterator[tuple[int, Any]]:
    try:
        from dask.distributed import Client, LocalCluster, as_completed as dask_completed
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ImportError("--engine dask needs dask[distributed]: pip install 'echoclr[scale]'") from exc

    cluster = None
    if scheduler:
        client = Client(scheduler)
    else:
        cluster = LocalCluster(n_workers=max(1, workers), threads_per_worker=1, processes=True,
                               dashboard_address=None)
        client = Client(cluster)
    try:
        # One task per item; a worker that dies mid-task has its tasks rescheduled by the scheduler (the writes are
        # idempotent), up to distributed's `allowed-failures` before the task is declared lost.
        futures = [client.submit(function, *task, key=f"echoclr-ingest-{i}-{id(tasks)}", pure=False)
                   for i, task in enumerate(tasks)]
        position = {future.key: i for i, future in enumerate(futures)}
        for future, result in dask_completed(futures, with_results=True):
            yield position[future.key], result
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
