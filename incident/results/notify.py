"""The notification list: one row per exposed user, saying what of theirs was exposed.

For the communications team's mail merge. Every figure is recomputed from the result's
`misdeliveries.parquet` with the scan's own exposure rules (`incident.pipeline.impact`), so the list
holds whether the scan wrote its users report as Parquet, CSV or both; the users report is
read only to check that it agrees.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import polars as pl

from incident.errors import InputError
from incident.pipeline.impact import exposure, users_report
from incident.report.tables import Destination, write_csv
from incident.results.read import Table, check_result, read_report
from incident.schema import COUNT, Role

MISDELIVERIES = "misdeliveries.parquet"
# The misdelivery columns that exposure and the users report need.
_NEEDED = (
    "event_id",
    "delivered_at",
    "for_user_id",
    "event_type",
    "sender_id",
    "recipient_id",
    "developer_id",
)
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


class Category(StrEnum):
    """What of a user's was in a misdelivered event; each is a column of event counts."""

    DIRECT_MESSAGES_SENT = "direct_messages_sent"
    DIRECT_MESSAGES_RECEIVED = "direct_messages_received"
    PROTECTED_POSTS_WRITTEN = "protected_posts_written"
    OTHER_ACCOUNT_EVENTS = "other_account_events"


@dataclass(frozen=True)
class CategorySpec:
    """The role that puts an event in a category, and how the category is said to the user."""

    role: Role
    singular: str
    plural: str


# A user's event is counted under the role they had in it (DESIGN rule 4): sender, recipient
# or author, for whose content it carried; an event in which they were only the subscribed
# account is one of their account's other events. The order is that of the sentence.
CATEGORIES: dict[Category, CategorySpec] = {
    Category.DIRECT_MESSAGES_SENT: CategorySpec(
        Role.SENDER, "direct message you sent", "direct messages you sent"
    ),
    Category.DIRECT_MESSAGES_RECEIVED: CategorySpec(
        Role.RECIPIENT, "direct message you received", "direct messages you received"
    ),
    Category.PROTECTED_POSTS_WRITTEN: CategorySpec(
        Role.AUTHOR, "protected post you wrote", "protected posts you wrote"
    ),
    Category.OTHER_ACCOUNT_EVENTS: CategorySpec(
        Role.SUBSCRIBER, "other event of your account", "other events of your account"
    ),
}
_CONTENT_ROLES = [spec.role for spec in CATEGORIES.values() if spec.role != Role.SUBSCRIBER]

NOTIFICATION_COLUMNS = (
    "user_id",
    "categories",
    "events",
    *(category.value for category in Category),
    "first_exposed_at",
    "last_exposed_at",
    "developers",
    "message",
)


def _category_counts(exposed: pl.LazyFrame) -> pl.LazyFrame:
    """Per user, distinct events per category; an event is in each category of a role the
    user had in it, and in `other_account_events` when they were only its subscriber."""
    roles = pl.col("roles")
    content = pl.any_horizontal(roles.list.contains(role.value) for role in _CONTENT_ROLES)
    counts = {
        category: (
            ~content if spec.role == Role.SUBSCRIBER else roles.list.contains(spec.role.value)
        )
        for category, spec in CATEGORIES.items()
    }
    return (
        exposed.group_by("user_id", "event_id")
        .agg(pl.col("role").unique().alias("roles"))
        .group_by("user_id")
        .agg(flag.sum().cast(COUNT).alias(category.value) for category, flag in counts.items())
    )


def _date(instant: pl.Expr) -> pl.Expr:
    """`11 August 2017`: the UTC date, spelled the same everywhere (no locale)."""
    month = instant.dt.month().replace_strict(
        dict(enumerate(_MONTHS, start=1)), return_dtype=pl.String
    )
    return pl.concat_str(
        instant.dt.day().cast(pl.String), month, instant.dt.year().cast(pl.String), separator=" "
    )


def _counted(count: pl.Expr, singular: str, plural: str) -> pl.Expr:
    return pl.concat_str(
        count.cast(pl.String),
        pl.when(count == 1).then(pl.lit(singular)).otherwise(pl.lit(plural)),
        separator=" ",
    )


def _message() -> pl.Expr:
    """The mail-merge sentence: the period, what was exposed, how many developers got it.

    Only counts and dates; the same figures always give the same words."""
    others = pl.any_horizontal(
        pl.col(category.value) > 0
        for category in Category
        if category != Category.OTHER_ACCOUNT_EVENTS
    )
    items = []
    for category, spec in CATEGORIES.items():
        count = pl.col(category.value)
        phrase = _counted(count, spec.singular, spec.plural)
        if category == Category.OTHER_ACCOUNT_EVENTS:
            # "other" only beside another category; alone it is simply the account's events.
            bare = _counted(
                count, spec.singular.removeprefix("other "), spec.plural.removeprefix("other ")
            )
            phrase = pl.when(others).then(phrase).otherwise(bare)
        items.append(pl.when(count > 0).then(phrase))
    listed = pl.concat_list(items).list.drop_nulls()
    joined = (
        pl.when(listed.list.len() > 1)
        .then(
            pl.concat_str(
                listed.list.head(listed.list.len() - 1).list.join(", "),
                pl.lit(" and "),
                listed.list.last(),
            )
        )
        .otherwise(listed.list.first())
    )
    first, last = pl.col("first_exposed_at"), pl.col("last_exposed_at")
    period = (
        pl.when(first.dt.date() == last.dt.date())
        .then(pl.concat_str(pl.lit("On "), _date(first)))
        .otherwise(pl.concat_str(pl.lit("Between "), _date(first), pl.lit(" and "), _date(last)))
    )
    one_item = pl.sum_horizontal(pl.col(category.value) for category in Category) == 1
    return pl.concat_str(
        period,
        pl.lit(" (UTC), because of a software error, "),
        joined,
        pl.when(one_item).then(pl.lit(" was")).otherwise(pl.lit(" were")),
        pl.lit(" delivered to "),
        _counted(pl.col("developers"), "developer who was", "developers who were"),
        pl.lit(" not authorized to receive "),
        pl.when(one_item).then(pl.lit("it.")).otherwise(pl.lit("them.")),
    )


def notification_list(result: Path) -> pl.DataFrame:
    """One row per exposed user of a result, sorted by `user_id`: the categories of what was
    exposed and their event counts, the period (UTC), the number of developers that received
    it, and a plain-language `message` for a mail merge.

    Raises `InputError` naming the directory when it is not an incident result, or when its
    users report disagrees with its misdeliveries."""
    result = Path(result)
    check_result(result)
    exposed = exposure(read_report(result, Table.MISDELIVERIES, columns=_NEEDED).lazy())
    users, categories = pl.collect_all([users_report(exposed), _category_counts(exposed)])
    _check_against_users_report(result, users)
    labels = pl.concat_list(
        pl.when(pl.col(category.value) > 0).then(pl.lit(spec.plural))
        for category, spec in CATEGORIES.items()
    ).list.drop_nulls()
    return (
        users.join(categories, on="user_id", how="left")
        .with_columns(labels.alias("categories"))
        .with_columns(_message().alias("message"))
        .select(NOTIFICATION_COLUMNS)
        .sort("user_id")
    )


def _check_against_users_report(result: Path, users: pl.DataFrame) -> None:
    # A result whose files were mixed up or edited must not send notices to the wrong people.
    report = read_report(result, Table.USERS)
    compared = ["user_id", "events", "developers", "first_exposed_at", "last_exposed_at"]
    if not report.select(compared).equals(users.select(compared)):
        raise InputError(
            f"{result}: the users report disagrees with {MISDELIVERIES}; "
            f"check the result with incident verify"
        )


def write_notifications(notices: pl.DataFrame, destination: Destination) -> None:
    """The list as CSV, under the spreadsheet policy of every CSV the tool writes."""
    write_csv(notices, destination)
