"""Partition tasks on Dask distributed: a LocalCluster on this machine (`local`, `local:N`) or
the scheduler of a running cluster (`tcp://HOST:8786`).

What every task shares (the key table of the grants) is sent to each worker once. A task
that raised one of the tool's errors (a damaged file, say) is not retried: its error is the
scan's. A task that raised anything else is retried, and one whose worker died is rescheduled
by Dask, up to the scheduler's `allowed-failures`; after that the scan fails, and, as for any
failure, no result is published.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Generic, TypeVar

from distributed import Client, KilledWorker, LocalCluster, as_completed

from incident.engine import LOCAL
from incident.errors import ConfigError, IncidentError

Item = TypeVar("Item")
Shared = TypeVar("Shared")
Result = TypeVar("Result")

# Retries of a task that raised an unexpected error (a worker's death is counted apart).
RETRIES = 2
# More worker processes than this per core only cost memory: a bound against a typo.
MAX_WORKERS_PER_CORE = 4


@dataclass(frozen=True)
class _Failed(Generic[Result]):
    """A task's own error, returned rather than raised so that Dask does not retry it."""

    error: IncidentError


def _guarded(
    task: Callable[[Item, Shared], Result], item: Item, shared: Shared
) -> Result | _Failed[Result]:
    try:
        return task(item, shared)
    except IncidentError as error:
        return _Failed(error)


class DaskEngine:
    """Runs partition tasks on the workers of a Dask client."""

    def __init__(self, client: Client, cluster: str) -> None:
        self._client = client
        self._cluster = cluster

    @property
    def workers(self) -> int:
        """The threads of the cluster's workers: how many tasks run at once."""
        threads: dict[str, int] = self._client.nthreads()
        return max(1, sum(threads.values()))

    def map(
        self,
        task: Callable[[Item, Shared], Result],
        items: Sequence[Item],
        shared: Shared,
        done: Callable[[Result], None],
    ) -> list[Result]:
        """Every item's result, in order; raises the first task's error."""
        handle = self._client.scatter(shared, broadcast=True, hash=False)
        futures = self._client.map(
            partial(_guarded, task), items, shared=handle, pure=False, retries=RETRIES
        )
        order = {future.key: index for index, future in enumerate(futures)}
        results: dict[int, Result] = {}
        try:
            for future, result in as_completed(futures, with_results=True):
                if isinstance(result, _Failed):
                    raise result.error
                results[order[future.key]] = result
                done(result)
        except KilledWorker as error:
            raise ConfigError(
                f"--cluster {self._cluster}: a partition task failed each time it ran, its "
                f"worker dying under it (out of memory, or killed): {_first_line(error)}"
            ) from None
        finally:
            self._client.cancel(futures)
        return [results[index] for index in range(len(items))]


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _local_cluster(cluster: str, workers: str | None) -> LocalCluster:
    n_workers = int(workers) if workers else None
    most = MAX_WORKERS_PER_CORE * (os.cpu_count() or 1)
    if n_workers is not None and not 1 <= n_workers <= most:
        raise ConfigError(
            f"--cluster {cluster}: expected between 1 and {most} workers on this machine "
            f"({MAX_WORKERS_PER_CORE} per core)"
        )
    # One thread per worker process: each task's polars queries use the cores themselves.
    return LocalCluster(
        n_workers=n_workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address="127.0.0.1:0",  # never a fixed port another program may hold
        silence_logs=logging.ERROR,
    )


@contextmanager
def dask_engine(cluster: str) -> Iterator[DaskEngine]:
    """A Dask engine for `cluster` (`local`, `local:N`, or a scheduler address), closed after."""
    cluster = cluster.strip()
    local = LOCAL.fullmatch(cluster)
    if not local and "://" not in cluster:
        raise ConfigError(
            f"--cluster {cluster}: expected local, local:N or a scheduler address like "
            "tcp://HOST:8786"
        )
    try:
        own = _local_cluster(cluster, local.group(1)) if local else None
        client = Client(own if own else cluster, timeout="20s")
    except (OSError, TimeoutError, ValueError) as error:
        raise ConfigError(
            f"--cluster {cluster}: cannot reach the Dask scheduler ({_first_line(error)}); "
            "expected local, local:N or an address like tcp://HOST:8786"
        ) from None
    try:
        yield DaskEngine(client, cluster)
    finally:
        client.close()
        if own:
            own.close()
