"""Two results compared: users and developers added, removed or changed, and the totals.

For when authorization data is corrected and the scan is run again. The reports are read by
`incident.results.read` as written (Parquet, or CSV when the scan wrote only CSV), into the schema
of this version.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import polars as pl

from incident.config import format_instant
from incident.results.read import KEYS, Table, read_report, read_summary
from incident.schema import COUNT
from incident.summary import Summary

_NEW = "_new"


class Change(StrEnum):
    """How an ID differs between the old and the new result."""

    ADDED = "added"
    REMOVED = "removed"
    CHANGED = "changed"


@dataclass(frozen=True)
class ChangeCounts:
    """How many IDs of one report were added, removed or changed, and the row counts."""

    added: int
    removed: int
    changed: int
    old_rows: int
    new_rows: int

    @property
    def differs(self) -> bool:
        """True when any ID was added, removed or changed."""
        return bool(self.added or self.removed or self.changed)


@dataclass(frozen=True)
class ResultDiff:
    """What differs between two results.

    `users` and `developers` have one row per ID that differs, sorted by ID: the ID, `change`
    (a `Change`) and `columns`, the report columns whose values differ (empty unless
    `changed`). `totals` has one row per number of the summary's `totals` and `accounting`:
    `name`, `old`, `new`, `change` (`new - old`; null when one summary lacks it). `settings`
    maps each setting that differs (the window, the attribution parameters) to its old and
    new value: results scanned differently are not comparable as they stand.
    """

    old: Path | str  # a directory, or a prefix in object storage
    new: Path | str
    settings: dict[str, tuple[str | None, str | None]]
    users: pl.DataFrame
    developers: pl.DataFrame
    user_counts: ChangeCounts
    developer_counts: ChangeCounts
    totals: pl.DataFrame

    @property
    def has_differences(self) -> bool:
        """True when any user, developer or summary total differs."""
        totals_differ = self.totals.select(pl.col("old").ne_missing(pl.col("new")).any()).item()
        entities_differ = self.user_counts.differs or self.developer_counts.differs
        return bool(self.settings) or entities_differ or bool(totals_differ)

    def to_dict(self) -> dict[str, Any]:
        """The whole difference as plain JSON-ready values, every differing ID listed."""

        def entities(frame: pl.DataFrame, counts: ChangeCounts) -> dict[str, Any]:
            return {
                "old": counts.old_rows,
                "new": counts.new_rows,
                "added": counts.added,
                "removed": counts.removed,
                "changed": counts.changed,
                "differences": frame.to_dicts(),
            }

        return {
            "old": str(self.old),
            "new": str(self.new),
            "has_differences": self.has_differences,
            "settings": {name: {"old": a, "new": b} for name, (a, b) in self.settings.items()},
            "users": entities(self.users, self.user_counts),
            "developers": entities(self.developers, self.developer_counts),
            "totals": {
                row["name"]: {"old": row["old"], "new": row["new"], "change": row["change"]}
                for row in self.totals.iter_rows(named=True)
            },
        }


def _changes(old: pl.DataFrame, new: pl.DataFrame, key: str) -> pl.DataFrame:
    compared = [name for name in old.columns if name != key]
    in_old, in_new = pl.col(key).is_not_null(), pl.col(key + _NEW).is_not_null()
    differing = pl.concat_list(
        pl.when(pl.col(name).ne_missing(pl.col(name + _NEW))).then(pl.lit(name))
        for name in compared
    ).list.drop_nulls()
    return (
        old.join(new, on=key, how="full", suffix=_NEW, coalesce=False)
        .select(
            pl.coalesce(key, key + _NEW).alias(key),
            pl.when(~in_old)
            .then(pl.lit(Change.ADDED.value))
            .when(~in_new)
            .then(pl.lit(Change.REMOVED.value))
            .otherwise(pl.lit(Change.CHANGED.value))
            .alias("change"),
            pl.when(in_old & in_new)
            .then(differing)
            .otherwise(pl.lit([], pl.List(pl.String)))
            .alias("columns"),
        )
        .filter((pl.col("change") != Change.CHANGED.value) | (pl.col("columns").list.len() > 0))
        .sort(key)
    )


def _change_counts(changes: pl.DataFrame, old: pl.DataFrame, new: pl.DataFrame) -> ChangeCounts:
    tally = {change: int((changes["change"] == change.value).sum()) for change in Change}
    return ChangeCounts(
        added=tally[Change.ADDED],
        removed=tally[Change.REMOVED],
        changed=tally[Change.CHANGED],
        old_rows=old.height,
        new_rows=new.height,
    )


def _numbers(summary: Summary) -> dict[str, int]:
    return {**vars(summary.totals), **vars(summary.accounting)}


def _totals(old: Summary, new: Summary) -> pl.DataFrame:
    old_numbers, new_numbers = _numbers(old), _numbers(new)
    names = list(new_numbers) + [name for name in old_numbers if name not in new_numbers]
    return pl.DataFrame(
        {
            "name": names,
            "old": [old_numbers.get(name) for name in names],
            "new": [new_numbers.get(name) for name in names],
        },
        schema={"name": pl.String, "old": COUNT, "new": COUNT},
    ).with_columns((pl.col("new") - pl.col("old")).alias("change"))


def _settings(summary: Summary) -> dict[str, str | None]:
    """What the figures of a result mean, as text: its window and attribution parameters
    (the inputs may well differ: a corrected file is what `diff` is for)."""
    settings: dict[str, str | None] = {
        "since": format_instant(summary.window.since),
        "until": format_instant(summary.window.until),
    }
    if summary.attribution is not None:
        settings["collision_window_seconds"] = str(summary.attribution.collision_window_seconds)
        settings["revocation_grace_seconds"] = str(summary.attribution.revocation_grace_seconds)
    return settings


def _differing_settings(old: Summary, new: Summary) -> dict[str, tuple[str | None, str | None]]:
    before, after = _settings(old), _settings(new)
    names = list(before) + [name for name in after if name not in before]
    return {
        name: (before.get(name), after.get(name))
        for name in names
        if before.get(name) != after.get(name)
    }


def diff_results(old: Path, new: Path) -> ResultDiff:
    """Compare two results; `InputError` naming the directory when either is not a result."""
    old, new = Path(old), Path(new)
    summaries = read_summary(old), read_summary(new)
    frames: dict[Table, tuple[pl.DataFrame, pl.DataFrame]] = {
        report: (read_report(old, report), read_report(new, report)) for report in KEYS
    }
    changes = {
        report: _changes(before, after, KEYS[report]) for report, (before, after) in frames.items()
    }
    return ResultDiff(
        old=old,
        new=new,
        settings=_differing_settings(*summaries),
        users=changes[Table.USERS],
        developers=changes[Table.DEVELOPERS],
        user_counts=_change_counts(changes[Table.USERS], *frames[Table.USERS]),
        developer_counts=_change_counts(changes[Table.DEVELOPERS], *frames[Table.DEVELOPERS]),
        totals=_totals(*summaries),
    )
