"""Shared fixtures: small hand-made inputs written to Parquet and scanned."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from incident import ScanConfig, ScanResult, Window, scan

Rows = Sequence[dict[str, Any]]


def utc(
    year: int,
    month: int,
    day: int,
    hour: int = 0,
    minute: int = 0,
    second: int = 0,
    microsecond: int = 0,
) -> datetime:
    """A UTC instant: utc(2018, 3, 1, 9) is 2018-03-01T09:00:00Z."""
    return datetime(year, month, day, hour, minute, second, microsecond, tzinfo=UTC)


DEFAULT: Any = object()


def delivery(
    event_id: Any = 1,
    delivered_at: Any = DEFAULT,
    app_id: Any = 10,
    for_user_id: Any = 1,
    event_type: Any = "tweet",
    **optional: Any,
) -> dict[str, Any]:
    """One delivery row; the default time is inside the default window."""
    return {
        "event_id": event_id,
        "delivered_at": utc(2018, 3, 1) if delivered_at is DEFAULT else delivered_at,
        "app_id": app_id,
        "for_user_id": for_user_id,
        "event_type": event_type,
        **optional,
    }


def grant(
    for_user_id: Any = 1,
    app_id: Any = 10,
    granted_at: Any = None,
    revoked_at: Any = None,
) -> dict[str, Any]:
    """One authorization row; by default granted long before the window and never revoked."""
    return {
        "for_user_id": for_user_id,
        "app_id": app_id,
        "granted_at": granted_at or utc(2016, 1, 1),
        "revoked_at": revoked_at,
    }


def write(rows: Rows | pl.DataFrame, path: Path, schema: dict[str, Any] | None = None) -> Path:
    """Write rows to a Parquet file, creating its directory."""
    frame = (
        rows
        if isinstance(rows, pl.DataFrame)
        else pl.DataFrame(rows, schema=schema, infer_schema_length=None)
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(path)
    return path


ScanFn = Callable[..., ScanResult]
# A grant for a user and an app that no test delivery uses.
BYSTANDER_GRANT = {
    "for_user_id": 987_654_321,
    "app_id": 987_654_321,
    "granted_at": datetime(2000, 1, 1, tzinfo=UTC),
    "revoked_at": None,
}


@pytest.fixture
def run_scan(tmp_path: Path) -> ScanFn:
    """Write deliveries, grants and (optionally) apps, scan them, return the result."""
    counter = iter(range(1_000))

    def run(
        deliveries: Rows | pl.DataFrame,
        grants: Rows | pl.DataFrame,
        apps: Rows | pl.DataFrame | None = None,
        window: Window | None = None,
        **config: Any,
    ) -> ScanResult:
        case = tmp_path / f"case{next(counter)}"
        if not isinstance(grants, pl.DataFrame) and not grants:
            # DESIGN rule 7 refuses a scan without a valid grant: "no grant covers anything"
            # is one grant of a pair that no delivery uses.
            grants = [BYSTANDER_GRANT]
        return scan(
            ScanConfig(
                deliveries=str(write(deliveries, case / "deliveries.parquet")),
                authorizations=str(write(grants, case / "authorizations.parquet")),
                apps=str(write(apps, case / "apps.parquet")) if apps is not None else None,
                out=case / "out",
                window=window or Window(),
                **config,
            )
        )

    return run
