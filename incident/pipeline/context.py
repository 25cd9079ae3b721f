"""The deliveries near the misdeliveries, read back for the evidence of a collision.

Attribution needs the traffic of a few apps within minutes of each misdelivery: their backend
and endpoint. This reads only those rows of the deliveries input, in two passes (the app and
time of every row, then the few rows in the wanted time slots whole), and the endpoint as
(ip, path).
"""

from __future__ import annotations

import polars as pl

from incident.pipeline.load import ROW, LoadedInput, SourceGroup, collect_input, stack
from incident.pipeline.normal import endpoint_ip, url_path
from incident.schema import ID, TIMESTAMP, Input

# The evidence each part of the signature needs, as `input.column`.
ENDPOINT_EVIDENCE = ("webhook_url", "resolved_ip")
BACKEND_EVIDENCE = "backend_host"


# What is read of the deliveries near the misdeliveries, besides their endpoint evidence; the
# context holds it with the endpoint as (ip, path).
EVIDENCE_READ = ("event_id", "app_id", "for_user_id", "delivered_at", BACKEND_EVIDENCE)
CONTEXT_SCHEMA: dict[str, pl.DataType] = {
    "event_id": ID(),
    "app_id": ID(),
    "for_user_id": ID(),
    "delivered_at": TIMESTAMP,
    BACKEND_EVIDENCE: pl.String(),
    "ip": pl.String(),
    "path": pl.String(),
}


def _bucket(window: int) -> pl.Expr:
    """The window-wide time slot of `delivered_at`. Two instants at most `window` apart are in
    the same or adjacent slots, so a join on (app, slot) finds every pair within the window
    without comparing every delivery of an app with every other."""
    return (pl.col("delivered_at").dt.epoch("ns") // max(window, 1)).alias("_bucket")


def _near(frame: pl.LazyFrame, window: int) -> pl.LazyFrame:
    """Each row three times: in its slot and in the two adjacent ones."""
    return (
        frame.with_columns(_bucket(window))
        .with_columns(pl.col("_bucket") + pl.lit([-1, 0, 1]))
        .explode("_bucket")
    )


def collision_context(
    found: pl.DataFrame, candidates: pl.DataFrame, deliveries: LoadedInput, window: int
) -> pl.DataFrame:
    """The deliveries of the receiving and candidate apps within the collision window of the
    misdeliveries that have a candidate."""
    possible = found.join(candidates, on="_m", how="semi")
    if not possible.height:
        # Without a candidate no collision can be shown: skip the scan.
        return pl.DataFrame(schema=CONTEXT_SCHEMA)
    apps_at = pl.concat(
        [
            possible.lazy().select("app_id", "delivered_at"),
            candidates.lazy()
            .join(possible.lazy().select("_m", "delivered_at"), on="_m")
            .select("app_id", "delivered_at"),
        ]
    )
    keys = _near(apps_at, window).select("app_id", "_bucket").unique().collect()
    return nearby(deliveries, keys, window)


def nearby(deliveries: LoadedInput, keys: pl.DataFrame, window: int) -> pl.DataFrame:
    """The delivery rows in the (app_id, _bucket) slots of `keys`, with their backend and
    endpoint (`CONTEXT_SCHEMA`).

    Two reads: the app and time of every row find the few row numbers in those slots, then
    only those rows are read whole; decoding the text evidence of every row would cost
    several times more. Rows are taken whether or not rule 1 rejects them: a row whose app
    and time parse shows the app's traffic."""
    numbers = collect_input(
        [_slot_rows(group, keys, window) for group in deliveries.groups], [deliveries]
    )
    frames = []
    for group, rows in zip(deliveries.groups, numbers, strict=True):
        wanted = pl.col(ROW).is_in(rows[ROW].implode())
        if group.integer("app_id"):
            # Not needed for the answer: an app filter on the raw integers lets the reader
            # skip decoding the rows of other apps before it looks up the row numbers.
            apps = as_read(group, "app_id", keys["app_id"].unique()).drop_nulls()
            wanted = pl.col(group.sources["app_id"]).is_in(apps.implode()) & wanted
        columns = [c for c in (*EVIDENCE_READ, *ENDPOINT_EVIDENCE) if c in group.sources]
        frames.append(group.scan().filter(wanted).select(*map(group.column, columns)))
    context = stack(frames, Input.DELIVERIES).select(
        *EVIDENCE_READ, "webhook_url", ip=endpoint_ip(pl.col("resolved_ip"))
    )
    (read,) = collect_input([context], [deliveries])
    # Each distinct URL is parsed once: an app calls few, and parsing every row costs more
    # than reading it.
    paths = _paths(read["webhook_url"].cast(pl.String))
    return read.drop("webhook_url").with_columns(path=paths).cast(CONTEXT_SCHEMA)  # type: ignore[arg-type]


def _paths(urls: pl.Series) -> pl.Series:
    """`url_path` of each URL, computed once per distinct URL."""
    distinct = urls.drop_nulls().unique()
    paths = pl.select(url_path(pl.lit(distinct))).to_series()
    return urls.replace_strict(distinct, paths, default=None, return_dtype=pl.String)


def as_read(group: SourceGroup, column: str, ids: pl.Series) -> pl.Series:
    """Text IDs in the integer type of `group`'s `column`; null where not an integer."""
    return ids.cast(group.raw_schema[group.sources[column]], strict=False)


def _slot_rows(group: SourceGroup, keys: pl.DataFrame, window: int) -> pl.LazyFrame:
    """The row numbers of `group` in the (app_id, _bucket) slots of `keys`. Integer app IDs
    are matched as read, which spares turning every row's ID into text; a key that is not an
    integer's text can match no such row, and one like "0123" at worst adds rows that the
    text joins after drop."""
    app = group.column("app_id")
    if group.integer("app_id"):
        keys = keys.with_columns(as_read(group, "app_id", keys["app_id"]))
        app = pl.col(group.sources["app_id"]).alias("app_id")
    return (
        group.scan()
        .select(ROW, app, group.column("delivered_at"))
        .with_columns(_bucket(window))
        .join(keys.drop_nulls().lazy(), on=["app_id", "_bucket"], how="semi")
        .select(ROW)
    )
