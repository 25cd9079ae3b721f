"""Attribution in chunks: the same scan explained one misdelivery at a time, a few at a time
or all at once gives the same result, file for file.

What is global across misdeliveries (whether any has a backend, the leaks that are no app's
own traffic, the endpoints report's distinct events and users, the evidence missing) must not
be computed per chunk: chunks of one row split every such figure.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from functools import partial
from pathlib import Path
from typing import Any
from unittest.mock import patch

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings

from incident import ScanConfig, scan
from incident.pipeline import cause
from incident.sample import generate_sample
from tests.test_cause_property import Case, cases
from tests.test_cause_property import run as run_case

# Files compared as bytes; misdeliveries.parquet is compared by content.
REPORTS = ("users.csv", "developers.csv", "endpoints.csv")
# What differs between two runs of one scan whatever the chunks: the version that wrote it.
VARYING = ("tool",)
ALL = 10**9


def chunked(rows: int) -> Any:
    """A patch that makes the scan explain its misdeliveries `rows` at a time."""
    return patch("incident.pipeline.cause.explain", partial(cause.explain, chunk_rows=rows))


def summary(out: Path) -> dict[str, Any]:
    figures = json.loads((out / "summary.json").read_text())
    return {key: value for key, value in figures.items() if key not in VARYING}


def assert_same_result(out: Path, reference: Path) -> None:
    for name in REPORTS:
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name
    assert summary(out) == summary(reference)
    misdeliveries = pl.read_parquet(out / "misdeliveries.parquet")
    assert misdeliveries.equals(pl.read_parquet(reference / "misdeliveries.parquet"))


@pytest.fixture(scope="module")
def sample() -> Any:
    """A realistic sample (endpoints that move, backends missing on some rows) with
    collisions, revocation lags and unexplained misdeliveries, scanned in one chunk."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate_sample(root / "logs", deliveries=10_000, seed=1, realistic=True)
        with chunked(ALL):
            scan(config(root, "whole"))
        yield root


def config(root: Path, name: str) -> ScanConfig:
    return ScanConfig(
        deliveries=str(root / "logs" / "deliveries"),
        authorizations=str(root / "logs" / "authorizations.parquet"),
        apps=str(root / "logs" / "apps.parquet"),
        out=root / name,
    )


def test_the_sample_has_what_chunks_could_split(sample: Path) -> None:
    figures = summary(sample / "whole")
    causes = figures["by_cause"]
    assert causes["shared_endpoint_collision"]["deliveries"] >= 10
    assert causes["revocation_lag"]["deliveries"] >= 3
    # A collision without a backend: a chunk of it alone has no backend at all.
    misdeliveries = pl.read_parquet(sample / "whole" / "misdeliveries.parquet")
    collisions = misdeliveries.filter(pl.col("cause") == "shared_endpoint_collision")
    assert collisions["backend_host"].null_count() >= 1
    assert figures["attribution"]["by_evidence"]["backend"] >= 1
    # A subscriber exposed by two collisions: one user of an endpoint, whatever the chunks.
    assert collisions["for_user_id"].is_duplicated().any()


@pytest.mark.parametrize("rows", [1, 3, 37])
def test_the_result_does_not_depend_on_the_chunk_size(sample: Path, rows: int) -> None:
    with chunked(rows):
        scan(config(sample, f"chunks-of-{rows}"))
    assert_same_result(sample / f"chunks-of-{rows}", sample / "whole")


def scanned_in(case: Case, root: Path, rows: int) -> tuple[list[pl.DataFrame], dict[str, Any]]:
    """The tables and the summary of `case` scanned in `root` (the paths are part of the
    result) with chunks of `rows` misdeliveries."""
    shutil.rmtree(root / "out", ignore_errors=True)
    with chunked(rows):
        result = run_case(case, root)
    endpoints = pl.read_parquet(result.out / "endpoints.parquet")
    tables = [result.misdeliveries.collect(), result.users, result.developers, endpoints]
    figures = {k: v for k, v in result.summary.to_json().items() if k not in VARYING}
    return tables, figures


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(case=cases())
def test_chunks_of_one_misdelivery_explain_as_all_at_once(case: Case) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tables, figures = scanned_in(case, Path(tmp), 1)
        whole_tables, whole_figures = scanned_in(case, Path(tmp), ALL)
    for table, whole in zip(tables, whole_tables, strict=True):
        assert table.equals(whole)
    assert figures == whole_figures
