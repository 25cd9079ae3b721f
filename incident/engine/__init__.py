"""How a scan's partition tasks are executed: in this process (the default, no Dask import)
or on a Dask cluster. Both run the same task function over the same partitions, and return
its results in the partitions' order, so that what follows does not know which ran them."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Protocol, TypeVar

from incident.errors import ConfigError

Item = TypeVar("Item")
Shared = TypeVar("Shared")
Result = TypeVar("Result")

# `local` or `local:N`: a LocalCluster on this machine, of N workers.
LOCAL = re.compile(r"local(?::(\d+))?")


def is_local(cluster: str) -> bool:
    """True when `cluster` names a cluster on this machine (its workers share its paths)."""
    return LOCAL.fullmatch(cluster.strip()) is not None


class Engine(Protocol):
    """Runs `task(item, shared)` for every item; `done` is called in this process as each
    result arrives (for progress), and the results come back in the items' order."""

    @property
    def workers(self) -> int:
        """How many tasks can run at once."""
        ...

    def map(
        self,
        task: Callable[[Item, Shared], Result],
        items: Sequence[Item],
        shared: Shared,
        done: Callable[[Result], None],
    ) -> list[Result]:
        """Every item's result, in order; an error of a task is raised here."""
        ...


class InProcess:
    """One task after another in this process: each task's queries use every core."""

    workers = 1

    def map(
        self,
        task: Callable[[Item, Shared], Result],
        items: Sequence[Item],
        shared: Shared,
        done: Callable[[Result], None],
    ) -> list[Result]:
        """Every item's result, in order."""
        results = []
        for item in items:
            results.append(task(item, shared))
            done(results[-1])
        return results


@contextmanager
def open_engine(cluster: str | None) -> Iterator[Engine]:
    """The engine for `--cluster`: None runs in process; `local`, `local:N` or a scheduler
    address (`tcp://HOST:8786`) runs on Dask, imported only then."""
    if cluster is None:
        yield InProcess()
        return
    try:
        from incident.engine.dask import dask_engine  # Dask is an optional extra
    except ImportError:
        raise ConfigError(
            f"--cluster {cluster}: needs Dask distributed; install it with "
            "pip install 'incident[dask]'"
        ) from None
    with dask_engine(cluster) as engine:
        yield engine
