"""Assembly: the whole data set in memory, exactly `deliveries` rows, in delivery order.

`_build` is the generator's pipeline: draw the population and its grants, one batch of
events carrying the injected misroutes, then authorized top-up batches until there are
enough rows; then drop the surplus (never a misroute's evidence unless it must), give
events their snowflake ids and sort the rows by delivery time. The result is still numeric
(indices, not strings), so the writers can format each day's rows as they write them, and
it carries each row's labels for truth.parquet. One seeded generator is drawn from in a
fixed order, which is what makes the same (deliveries, seed) give byte-identical files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl

from incident.errors import ConfigError
from incident.sample.constants import (
    I64,
    MAX_DELIVERIES,
    MAX_EVENT_BITS,
    MIN_DELIVERIES,
    NULL_ID,
    SNOWFLAKE_EPOCH_MS,
    Bool,
)
from incident.sample.events import (
    _Batch,
    _concat_events,
    _concat_rows,
    _Events,
    _normal_batch,
    _Rows,
)
from incident.sample.grants import _Grants, _grants
from incident.sample.misroutes import _misroute_batch
from incident.sample.population import _Population, _population


@dataclass(frozen=True)
class _Dataset:
    """Everything generate_sample writes, before string formatting.

    `deliveries` holds one row per delivery in delivery order (delivery_id = row + 1): the
    numeric output columns, `event_type` as an index into EVENT_TYPES, NULL_ID for absent
    sender and recipient, `app` and `host` indices for the evidence strings, for checks
    `attempt`, `injected` and `intended` (the reason a base misroute was built for), and the
    labels of truth.parquet: `cause` (a CAUSES index, NO_CAUSE if authorized) and
    `intended_app` (an app index, -1 unless a collision).
    """

    pop: _Population
    grants: _Grants
    deliveries: pl.DataFrame
    users_seen: int  # distinct accounts in deliveries or grants


def _check_deliveries(n_deliveries: int) -> None:
    if not MIN_DELIVERIES <= n_deliveries <= MAX_DELIVERIES:
        raise ConfigError(
            f"deliveries: expected {MIN_DELIVERIES:,} to {MAX_DELIVERIES:,}, got {n_deliveries:,}"
        )


def _batches(
    rng: np.random.Generator, pop: _Population, grants: _Grants, n_deliveries: int
) -> list[_Batch]:
    """The misroute batch, then authorized top-up batches until enough rows are kept.

    An event makes about two rows; the first top-up assumes more so it undershoots, the
    next use the measured ratio.
    """
    k_misroutes = max(round(0.004 * n_deliveries), min(40, n_deliveries // 10))
    batches = [_misroute_batch(rng, pop, grants, k_misroutes)]
    n_events = batches[0].events.size
    n_kept = sum(int(keep.sum()) for keep in batches[0].keep)
    per_event = 2.5
    while n_kept < n_deliveries:
        want = math.ceil((n_deliveries - n_kept) / per_event * 1.02) + 16
        batch = _normal_batch(rng, pop, grants, want, n_events)
        kept = sum(int(keep.sum()) for keep in batch.keep)
        per_event = max(kept / want, 0.05)
        batches.append(batch)
        n_events += batch.events.size
        n_kept += kept
    return batches


def _drop_surplus(
    rng: np.random.Generator, rows: _Rows, keep: Bool, n_deliveries: int, n_misroute_rows: int
) -> None:
    """Unset `keep` for the surplus rows, so exactly `n_deliveries` remain.

    The surplus goes at random among the top-up batches' rows. Only a tiny sample needs
    more: then the misroute batch's (first) authorized rows go first, then its misroutes,
    and a collision's trigger last, since without it the label is false.
    """
    kept_idx = np.flatnonzero(keep)
    surplus = kept_idx.size - n_deliveries
    if surplus > 0:
        priority = rng.random(kept_idx.size)
        head = kept_idx[: np.searchsorted(kept_idx, n_misroute_rows)]
        priority[: head.size] += 1 + rows.injected[head] + 2 * rows.trigger[head]
        keep[kept_idx[np.argpartition(priority, surplus)[:surplus]]] = False


def _event_ids(events: _Events, n_deliveries: int) -> I64:
    """Snowflake-style event ids: event time in ms, then the (unique) event index."""
    bits = max(22, int(events.size).bit_length())
    if bits > MAX_EVENT_BITS:
        raise ConfigError(f"deliveries: {n_deliveries:,} needs too many events for unique ids")
    return ((events.t // 1000 - SNOWFLAKE_EPOCH_MS) << bits) + np.arange(
        events.size, dtype=np.int64
    )


def _delivery_frame(
    pop: _Population, events: _Events, rows: _Rows, keep: Bool, event_ids: I64
) -> pl.DataFrame:
    """The kept rows with their event-level columns, sorted by delivery time.

    Event-level columns are gathered in generation order, where rows of one event are
    adjacent (cache-friendly); the time sort then moves all columns at once, in parallel.
    """
    ev = rows.ev
    sender, recipient = events.sender[ev], events.recipient[ev]
    return (
        pl.DataFrame(
            {
                "keep": keep,
                "event_id": event_ids[ev],
                "delivered_at": rows.t,
                "app_id": pop.app_ids[rows.app],
                "for_user_id": pop.user_ids[rows.user],
                "event_type": events.etype[ev],
                "sender_id": np.where(sender == NULL_ID, NULL_ID, pop.user_ids[sender]),
                "recipient_id": np.where(recipient == NULL_ID, NULL_ID, pop.user_ids[recipient]),
                "app": rows.app,
                "host": events.host[ev],
                "http_status": rows.http,
                "attempt": rows.attempt,
                "injected": rows.injected,
                "intended": rows.intended,
                "cause": rows.cause,
                "intended_app": rows.intended_app,
            }
        )
        .filter("keep")
        .drop("keep")
        # Stable, so equal instants keep generation order and reruns are byte-identical.
        .sort("delivered_at", maintain_order=True)
    )


def _users_seen(pop: _Population, grants: _Grants, events: _Events, rows: _Rows, keep: Bool) -> int:
    """Distinct accounts among grantees and the kept rows' subscribers, senders, recipients."""
    seen = np.zeros(pop.n_users, dtype=np.bool_)
    seen[grants.user] = True
    for party in (rows.user, events.sender[rows.ev], events.recipient[rows.ev]):
        seen[party[keep & (party != NULL_ID)]] = True
    return int(seen.sum())


def _build(n_deliveries: int, seed: int) -> _Dataset:
    _check_deliveries(n_deliveries)
    rng = np.random.default_rng(seed)
    pop = _population(rng, n_deliveries)
    grants = _grants(rng, pop)
    batches = _batches(rng, pop, grants, n_deliveries)
    events = _concat_events([batch.events for batch in batches])
    rows = _concat_rows([part for batch in batches for part in batch.rows])
    keep = np.concatenate([mask for batch in batches for mask in batch.keep])
    n_misroute_rows = sum(part.size for part in batches[0].rows)
    _drop_surplus(rng, rows, keep, n_deliveries, n_misroute_rows)
    event_ids = _event_ids(events, n_deliveries)
    return _Dataset(
        pop=pop,
        grants=grants,
        deliveries=_delivery_frame(pop, events, rows, keep, event_ids),
        users_seen=_users_seen(pop, grants, events, rows, keep),
    )
