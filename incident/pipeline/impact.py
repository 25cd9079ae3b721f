"""Misdeliveries -> who received them (developers) and whose data was in them (exposure).

Every function here takes and returns lazy frames of findings, which are small next to the
deliveries, so that the same code can run on one partition of a larger scan.
"""

from __future__ import annotations

import polars as pl

from incident.report.tables import ISO_UTC
from incident.schema import COUNT, ID, INTENDED_DEVELOPER, EventType, Role
from incident.summary import Counts, RegulatorFigures

UNKNOWN_DEVELOPER = "unknown:"


def attribute_developers(
    frame: pl.LazyFrame,
    registry: pl.DataFrame | None,
    app: str = "app_id",
    developer: str = "developer_id",
) -> pl.LazyFrame:
    """Add column `developer` for the app in column `app`: its registered developer,
    `unknown:<app_id>` when the registry has no developer for it, or the app itself when
    there is no registry. A null app has a null developer."""
    if registry is None:
        return frame.with_columns(pl.col(app).alias(developer))
    unknown = pl.lit(UNKNOWN_DEVELOPER) + pl.col(app)
    developers = registry.lazy().select(
        pl.col("app_id").alias(app), pl.col("developer_id").alias(developer)
    )
    return frame.join(developers, on=app, how="left", maintain_order="left").with_columns(
        pl.coalesce(developer, unknown).alias(developer)
    )


def exposure(misdeliveries: pl.LazyFrame, carry: tuple[str, ...] = ()) -> pl.LazyFrame:
    """One row per (misdelivery, exposed user, role) per DESIGN rule 4; null IDs expose nobody.
    Each row keeps the event, its type, the developer, the time and the columns in `carry`."""
    event_type = pl.col("event_type")
    roles = [
        (pl.col("for_user_id"), Role.SUBSCRIBER, pl.lit(True)),
        (pl.col("sender_id"), Role.SENDER, event_type == EventType.DIRECT_MESSAGE.value),
        (pl.col("recipient_id"), Role.RECIPIENT, event_type == EventType.DIRECT_MESSAGE.value),
        (pl.col("sender_id"), Role.AUTHOR, event_type == EventType.PROTECTED_TWEET.value),
    ]
    carried = ["event_id", "event_type", "developer_id", "delivered_at", *carry]
    return pl.concat(
        [
            misdeliveries.filter(applies & user.is_not_null()).select(
                user.cast(ID).alias("user_id"), pl.lit(role.value).alias("role"), *carried
            )
            for user, role, applies in roles
        ]
    )


def _distinct_events(event_type: EventType | None = None) -> pl.Expr:
    events = pl.col("event_id")
    if event_type is not None:
        events = events.filter(pl.col("event_type") == event_type.value)
    return events.n_unique().cast(COUNT)


def users_report(exposed: pl.LazyFrame) -> pl.LazyFrame:
    """One row per exposed user, sorted by `user_id`."""
    return (
        exposed.group_by("user_id")
        .agg(
            pl.col("role").unique().sort().alias("roles"),
            _distinct_events().alias("events"),
            _distinct_events(EventType.DIRECT_MESSAGE).alias("direct_messages"),
            _distinct_events(EventType.PROTECTED_TWEET).alias("protected_tweets"),
            pl.col("developer_id").n_unique().cast(COUNT).alias("developers"),
            pl.col("developer_id").unique().sort().alias("developer_ids"),
            pl.col("delivered_at").min().alias("first_exposed_at"),
            pl.col("delivered_at").max().alias("last_exposed_at"),
        )
        .sort("user_id")
    )


def developers_report(misdeliveries: pl.LazyFrame, exposed: pl.LazyFrame) -> pl.LazyFrame:
    """One row per developer that received a misdelivery, sorted by `developer_id`."""
    received = misdeliveries.group_by("developer_id").agg(
        pl.col("app_id").unique().sort().alias("app_ids"),
        _distinct_events().alias("events"),
        pl.len().cast(COUNT).alias("deliveries"),
        _distinct_events(EventType.DIRECT_MESSAGE).alias("direct_messages"),
        _distinct_events(EventType.PROTECTED_TWEET).alias("protected_tweets"),
        pl.col("delivered_at").min().alias("first_received_at"),
        pl.col("delivered_at").max().alias("last_received_at"),
        # Whose users' data it received: the developers the shared endpoint meant it for.
        pl.col(INTENDED_DEVELOPER).drop_nulls().unique().sort().alias("intended_developer_ids"),
    )
    users = exposed.group_by("developer_id").agg(
        pl.col("user_id").n_unique().cast(COUNT).alias("users_exposed")
    )
    return (
        received.join(users, on="developer_id", how="left")
        .with_columns(pl.col("users_exposed").fill_null(0))
        .select(
            "developer_id",
            "app_ids",
            "events",
            "deliveries",
            "direct_messages",
            "protected_tweets",
            "users_exposed",
            "first_received_at",
            "last_received_at",
            "intended_developer_ids",
        )
        .sort("developer_id")
    )


def breakdown(misdeliveries: pl.LazyFrame, by: str) -> pl.LazyFrame:
    """Distinct events and delivery rows of the misdeliveries per value of column `by`."""
    return (
        misdeliveries.group_by(by)
        .agg(_distinct_events().alias("events"), pl.len().cast(COUNT).alias("deliveries"))
        .sort(by)
    )


def _records(misdeliveries: pl.LazyFrame) -> dict[str, Counts]:
    """Distinct events and deliveries per category of personal data record."""
    event_type = pl.col("event_type")
    sensitive = [EventType.DIRECT_MESSAGE.value, EventType.PROTECTED_TWEET.value]
    categories = {
        "direct_messages": event_type == EventType.DIRECT_MESSAGE.value,
        "protected_posts": event_type == EventType.PROTECTED_TWEET.value,
        "other_events": ~event_type.is_in(sensitive),
    }
    counts = (
        misdeliveries.select(
            expression
            for name, where in categories.items()
            for expression in (
                pl.col("event_id").filter(where).n_unique().cast(COUNT).alias(f"{name}.events"),
                where.sum().cast(COUNT).alias(f"{name}.deliveries"),
            )
        )
        .collect(engine="streaming")
        .row(0, named=True)
    )
    return {
        name: Counts(counts[f"{name}.events"], counts[f"{name}.deliveries"]) for name in categories
    }


def regulator_figures(
    users: pl.DataFrame, misdeliveries: pl.DataFrame | pl.LazyFrame
) -> RegulatorFigures:
    """The GDPR Art. 33(3)(a) figures from the users report and the misdeliveries: exposed
    users per role, records per category, and the first and last misdelivery. The
    misdeliveries are only aggregated (a scan of files need not fit in memory)."""
    found = misdeliveries.lazy()
    roles = pl.col("roles")
    subjects = users.select(
        roles.list.contains(role.value).sum().cast(COUNT).alias(role.value) for role in Role
    ).row(0, named=True)
    correspondents = users.select(
        (roles.list.contains(Role.SENDER.value) | roles.list.contains(Role.RECIPIENT.value)).sum()
    ).item()
    period = (
        found.select(
            pl.col("delivered_at").min().dt.strftime(ISO_UTC).alias("first"),
            pl.col("delivered_at").max().dt.strftime(ISO_UTC).alias("last"),
        )
        .collect(engine="streaming")
        .row(0)
    )
    event_types = found.select(pl.col("event_type").unique()).collect(engine="streaming")
    sensitive = {EventType.DIRECT_MESSAGE.value, EventType.PROTECTED_TWEET.value}
    return RegulatorFigures(
        subjects={role: int(count) for role, count in subjects.items()},
        correspondents=int(correspondents),
        records=_records(found),
        other_event_types=tuple(sorted(set(event_types["event_type"].to_list()) - sensitive)),
        first_misdelivered_at=period[0],
        last_misdelivered_at=period[1],
    )
