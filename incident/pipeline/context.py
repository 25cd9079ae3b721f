"""The deliveries near the misdeliveries, read back for the evidence of a collision.

Attribution needs the traffic of a few apps within minutes of each misdelivery: their backend
and endpoint. Decoding the text evidence of every row would cost several times more than the
rest of the scan's attribution, so the rows are read in two passes. The first reads only the
cheap columns (app, time and IP) of the rows in the wanted time slots: where the receiving app
and every authorized candidate were seen. The second reads whole only the rows of the
receiving apps and of the candidates that may have listened where the misdelivery went
(`endpoints.near_received_ip`): most candidates were elsewhere, and their rows are not needed.
"""

from __future__ import annotations

import polars as pl

from incident.pipeline.endpoints import near_received_ip, received_ips
from incident.pipeline.load import ROW, LoadedInput, SourceGroup, collect_input, stack
from incident.pipeline.normal import endpoint_ips, url_paths
from incident.pipeline.values import stored_between, stored_bounds
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
SLOT = "_bucket"


def _bucket(window: int, at: pl.Expr | None = None) -> pl.Expr:
    """The window-wide time slot of `at` (`delivered_at`). Two instants at most `window` apart
    are in the same or adjacent slots, so a join on (app, slot) finds every pair within the
    window without comparing every delivery of an app with every other."""
    at = pl.col("delivered_at") if at is None else at
    return (at.dt.epoch("ns") // max(window, 1)).alias(SLOT)


def _slots(apps_at: pl.LazyFrame, window: int) -> pl.DataFrame:
    """(app_id, _bucket): the distinct slots of each (app_id, delivered_at) and of the two
    slots either side."""
    # Many deliveries share a slot: the distinct ones are widened, not every row.
    slots = apps_at.select("app_id", _bucket(window)).unique()
    return (
        pl.concat([slots.with_columns(pl.col(SLOT) + step) for step in (-1, 0, 1)])
        .unique()
        .collect()
    )


def collision_context(
    found: pl.DataFrame,
    candidates: pl.DataFrame,
    registered: pl.DataFrame,
    deliveries: LoadedInput,
    window: int,
) -> pl.DataFrame:
    """The deliveries within the collision window of the misdeliveries that may be collisions:
    those of the candidates seen on, or registered at, an IP the misdelivery may have gone to
    (no other candidate can be on its endpoint), and the receiving app's."""
    possible = found.join(candidates, on="_m", how="semi")
    if not possible.height:
        # Without a candidate no collision can be shown: skip the scan.
        return pl.DataFrame(schema=CONTEXT_SCHEMA)
    wanted = candidates.lazy().join(possible.lazy().select("_m", "delivered_at"), on="_m")
    apps_at = pl.concat([possible.lazy().select("app_id", "delivered_at"), wanted.drop("_m")])
    sighted = _sightings(deliveries, _slots(apps_at, window), window)
    seen = pl.concat(rows for _, rows in sighted).lazy().select("app_id", "delivered_at", "ip")
    ips = received_ips(possible, seen, registered, window)
    near = near_received_ip(wanted, ips, seen, registered, window).collect()
    receiving = possible.join(near, on="_m", how="semi").select("app_id", "delivered_at")
    keys = _slots(pl.concat([receiving.lazy(), near.lazy().drop("_m")]), window)
    return _whole_rows(deliveries, sighted, keys)


def _sightings(
    deliveries: LoadedInput, keys: pl.DataFrame, window: int
) -> list[tuple[SourceGroup, pl.DataFrame]]:
    """Per group of `deliveries`: the group of its files that may hold rows in the (app_id,
    _bucket) slots of `keys`, and (_row, app_id, delivered_at, ip, _bucket) of those rows as
    its `scan()` numbers them, from the cheap columns alone. The slot test is a filter on the
    scan, so the reader decodes the IP of the rows in the slots only.

    Rows are taken whether or not rule 1 rejects them: a row whose app and time parse shows
    the app's traffic."""
    groups, queries = [], []
    for whole in deliveries.groups:
        group, in_time = _in_time(whole, keys, window)
        at = group.column("delivered_at")
        ip = group.column("resolved_ip") if "resolved_ip" in group.sources else pl.lit(None)
        groups.append(group)
        queries.append(
            group.scan()
            .filter(in_time, _in_slots(group, keys, _bucket(window, at)))
            .select(ROW, group.column("app_id"), at, ip.cast(pl.String).alias("ip"))
            .with_columns(_bucket(window))
            .cast({"app_id": ID, "delivered_at": TIMESTAMP})
        )
    # The IPs are written in one form once read: few are distinct.
    sighted = collect_input(queries, [deliveries])
    return [
        (group, seen.with_columns(endpoint_ips(seen["ip"])))
        for group, seen in zip(groups, sighted, strict=True)
    ]


def _in_time(group: SourceGroup, keys: pl.DataFrame, window: int) -> tuple[SourceGroup, pl.Expr]:
    """The files of `group` that may hold rows within the time the slots of `keys` span (by
    their footers), and a test on the stored times true at least for those rows (the reader
    skips the row groups outside). So a chunk of misdeliveries close in time (event IDs that
    grow with time, say) reads the files of its days only."""
    slots = keys[SLOT].drop_nulls()
    if slots.is_empty():
        return group, pl.lit(False)
    first, last = int(slots.min()), int(slots.max())  # type: ignore[arg-type]
    width = max(window, 1)  # as `_bucket` takes it
    low, high = first * width, (last + 1) * width - 1
    source = group.sources["delivered_at"]
    dtype = group.raw_schema[source]
    bounds = stored_bounds(dtype, low, high)
    if bounds is None:
        return group, pl.lit(True)
    test = stored_between(source, dtype, *bounds)
    return group.overlapping(source, *bounds), pl.lit(True) if test is None else test


def _in_slots(group: SourceGroup, keys: pl.DataFrame, slot: pl.Expr) -> pl.Expr:
    """True for a row of `group` in one of the (app_id, _bucket) slots of `keys`; `slot` is the
    row's. Integer app IDs are matched as read, which spares turning every row's ID into text:
    a key that is not an integer's text can match no such row, and one like "0123" at worst
    adds rows of app 123, which are that app's traffic all the same."""
    app = group.column("app_id")
    if group.integer("app_id"):
        keys = keys.with_columns(as_read(group, "app_id", keys["app_id"]))
        app = pl.col(group.sources["app_id"])
    keys = keys.drop_nulls()
    packed = _in_packed_slots(keys, app, slot)
    if packed is not None:
        return packed
    wanted = keys.select(pl.struct("app_id", SLOT)).to_series()
    return pl.struct(app.alias("app_id"), slot).is_in(wanted.implode())


# Integer types whose every value is an Int64.
_IN_INT64 = (pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32)


def _in_packed_slots(keys: pl.DataFrame, app: pl.Expr, slot: pl.Expr) -> pl.Expr | None:
    """`_in_slots` on one integer per slot, (app - lowest app) * slots + (slot - lowest slot):
    a third cheaper to look up than a struct. None when the apps are not integers, or when
    the range of apps times the range of slots does not fit in 62 bits."""
    if keys.is_empty() or keys.schema["app_id"] not in _IN_INT64:
        return None
    apps, slots = keys["app_id"].cast(pl.Int64), keys[SLOT]
    app_low, app_high = int(apps.min()), int(apps.max())  # type: ignore[arg-type]
    slot_low, slot_high = int(slots.min()), int(slots.max())  # type: ignore[arg-type]
    span = slot_high - slot_low + 1
    if (app_high - app_low + 1) * span >= 2**62:
        return None
    wanted = (apps - app_low) * span + (slots - slot_low)
    app = app.cast(pl.Int64)
    inside = app.is_between(app_low, app_high) & slot.is_between(slot_low, slot_high)
    packed = pl.when(inside).then((app - app_low) * span + (slot - slot_low))
    return packed.is_in(wanted.implode()).fill_null(False)


# What the second pass reads: the sightings hold the rest.
_REST = ("event_id", "for_user_id", BACKEND_EVIDENCE, "webhook_url")


def _whole_rows(
    deliveries: LoadedInput, sighted: list[tuple[SourceGroup, pl.DataFrame]], keys: pl.DataFrame
) -> pl.DataFrame:
    """The sighted rows in the (app_id, _bucket) slots of `keys`, read whole, with their backend
    and endpoint (`CONTEXT_SCHEMA`). Only the files that hold them are read, and only the
    columns the sightings lack: each column of every row costs its decoding."""
    frames = []
    for group, seen in sighted:
        seen = seen.join(keys, on=["app_id", SLOT], how="semi")
        if seen.is_empty():
            # No file holds a wanted row: reading would decode every row to keep none.
            continue
        holding, rows = group.holding(seen[ROW])
        columns = [c for c in _REST if c in group.sources]
        rest = holding.scan().filter(pl.col(ROW).is_in(rows.implode()))
        frames.append(
            rest.select(ROW, *map(group.column, columns)).join(
                seen.lazy().select("app_id", "delivered_at", "ip", pl.lit(rows).alias(ROW)),
                on=ROW,
            )
        )
    if not frames:
        return pl.DataFrame(schema=CONTEXT_SCHEMA)
    context = stack(frames, Input.DELIVERIES).select(*EVIDENCE_READ, "ip", "webhook_url")
    (read,) = collect_input([context], [deliveries])
    paths = url_paths(read["webhook_url"].cast(pl.String))
    return read.drop("webhook_url").with_columns(path=paths).cast(CONTEXT_SCHEMA)  # type: ignore[arg-type]


def as_read(group: SourceGroup, column: str, ids: pl.Series) -> pl.Series:
    """Text IDs in the integer type of `group`'s `column`; null where not an integer."""
    return ids.cast(group.raw_schema[group.sources[column]], strict=False)
