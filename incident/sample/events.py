"""Account events and the delivery rows they fan out into: the authorized traffic.

An event (a DM, a post, a like, a follow) is delivered to every app whose grant of a party
covers its instant, a short latency later; some attempts fail with a 5xx and are retried a
few seconds after, some get a 404/410 the platform does not retry. `_Rows` carries, besides
the output columns, how each row was built (its grant, cause, intended app), so that
`_consistent` can drop the few rows that latency or a retry pushed out of what they were
built to be, which keeps every label in truth.parquet exact. `_normal_batch` is the
authorized top-up traffic; misroutes.py builds the injected kind from the same parts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import numpy as np
import numpy.typing as npt

from incident.sample.constants import (
    AFTER_REVOCATION,
    CLIENT_STATUSES,
    COLLISION,
    COVERED,
    DM,
    FAIL_STATUSES,
    FAVORITE,
    FOLLOW,
    I8,
    I32,
    I64,
    LAG,
    LOG_END,
    LOG_START,
    N_BACKEND_HOSTS,
    NO_CAUSE,
    NORMAL_MIX,
    NULL_ID,
    P_CLIENT_ERROR,
    P_EXACT_GRANT_START,
    P_RETRY_INJECTED,
    P_RETRY_NORMAL,
    REVOCATION_GRACE,
    SECOND,
    UNEXPLAINED,
    Bool,
)
from incident.sample.grants import _classify, _expand, _Grants
from incident.sample.population import _Population


@dataclass(frozen=True)
class _Events:
    """Account events: when, what, who; an event fans out into delivery rows."""

    t: I64
    etype: I8
    sender: I64  # user index or NULL_ID
    recipient: I64
    host: I64

    @property
    def size(self) -> int:
        return int(self.t.size)


@dataclass(frozen=True)
class _Rows:
    """Delivery attempts, by index into events, users and apps."""

    ev: I64
    user: I64
    app: I64
    t: I64
    grant: I64  # the grant row that covered the event, or -1 for misroutes
    injected: Bool
    intended: I8  # reason a base misroute was built for; -1 for derived rows
    cause: I8  # CAUSES index of a misroute (retries keep it); NO_CAUSE if authorized
    intended_app: I32  # the app a collision's event was meant for; -1 otherwise
    trigger: Bool  # a collision's receiving-app activity: never dropped as surplus
    attempt: I8
    http: npt.NDArray[np.int32]

    @property
    def size(self) -> int:
        return int(self.ev.size)

    def take(self, idx: I64 | Bool) -> _Rows:
        return _Rows(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})


def _concat_rows(parts: Sequence[_Rows]) -> _Rows:
    return _Rows(
        **{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(_Rows)}
    )


def _concat_events(parts: Sequence[_Events]) -> _Events:
    return _Events(
        **{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(_Events)}
    )


def _new_rows(
    ev: I64,
    user: I64,
    app: I64,
    t: I64,
    grant: I64,
    injected: bool,
    intended: I8 | None = None,
    *,
    cause: I8 | None = None,
    intended_app: I32 | None = None,
    trigger: bool = False,
) -> _Rows:
    """Rows of one kind; a misroute's cause defaults to unexplained."""
    n = ev.size
    return _Rows(
        ev=ev,
        user=user,
        app=app,
        t=t,
        grant=grant,
        injected=np.full(n, injected, dtype=np.bool_),
        intended=np.full(n, -1, dtype=np.int8) if intended is None else intended,
        cause=np.full(n, UNEXPLAINED if injected else NO_CAUSE, dtype=np.int8)
        if cause is None
        else cause,
        intended_app=np.full(n, -1, dtype=np.int32) if intended_app is None else intended_app,
        trigger=np.full(n, trigger, dtype=np.bool_),
        attempt=np.zeros(n, dtype=np.int8),
        http=np.full(n, 200, dtype=np.int32),
    )


def _draw_types(rng: np.random.Generator, n: int, mix: Sequence[float]) -> I8:
    return np.searchsorted(np.cumsum(mix), rng.random(n) * sum(mix), side="right").astype(np.int8)


def _account_events(
    rng: np.random.Generator, n_users: int, user: I64, t: I64, etype: I8
) -> tuple[_Events, I64, I64, I64]:
    """Events of `user` at `t`; returns (events, subscriber event index, subscriber, other party).

    A direct message has two subscribers: it is delivered for the sender to the sender's apps
    and for the recipient to the recipient's apps. Posts carry their author as sender_id;
    likes and follows carry the acting account.
    """
    n = user.size
    other = (user + rng.integers(1, n_users, n)) % n_users
    dm = etype == DM
    user_sends = rng.random(n) < 0.5
    actor_is_other = (etype == FAVORITE) | (etype == FOLLOW)
    sender = np.where(dm, np.where(user_sends, user, other), np.where(actor_is_other, other, user))
    recipient = np.where(dm, np.where(user_sends, other, user), NULL_ID)
    events = _Events(
        t=t,
        etype=etype,
        sender=sender,
        recipient=recipient,
        host=rng.integers(0, N_BACKEND_HOSTS, n),
    )
    local = np.arange(n, dtype=np.int64)
    return events, np.concatenate([local, local[dm]]), np.concatenate([user, other[dm]]), other


def _fan_out(grants: _Grants, sub_ev: I64, sub_user: I64, t: I64) -> tuple[I64, I64, I64]:
    """Every app whose grant covers the event time: (event index, subscriber, grant row)."""
    parent, gi = _expand(grants.user_start[sub_user], grants.user_count[sub_user])
    te = t[sub_ev[parent]]
    ok = (grants.start[gi] <= te) & (te < grants.end[gi])
    parent, gi = parent[ok], gi[ok]
    # Overlapping or duplicate rows of one key are adjacent: deliver once per app.
    dup = np.zeros(parent.size, dtype=np.bool_)
    dup[1:] = (parent[1:] == parent[:-1]) & (grants.app[gi[1:]] == grants.app[gi[:-1]])
    parent, gi = parent[~dup], gi[~dup]
    return sub_ev[parent], sub_user[parent], gi


def _latency(rng: np.random.Generator, n: int) -> I64:
    return rng.integers(20_000, 1_500_000, n)  # 20 ms .. 1.5 s after the event


def _attempts(rng: np.random.Generator, rows: _Rows) -> tuple[_Rows, _Rows]:
    """Fail some attempts with a 5xx and retry them a few seconds later (new row, same event).

    Returns the first attempts, with their status, and the retries.
    """
    n = rows.size
    fail = rng.random(n) < np.where(rows.injected, P_RETRY_INJECTED, P_RETRY_NORMAL)
    http = np.full(n, 200, dtype=np.int32)
    http[fail] = FAIL_STATUSES[rng.integers(0, FAIL_STATUSES.size, int(fail.sum()))]
    client = ~fail & (rng.random(n) < P_CLIENT_ERROR)
    http[client] = CLIENT_STATUSES[rng.integers(0, CLIENT_STATUSES.size, int(client.sum()))]
    first = replace(rows, http=http)
    retry = rows.take(fail)
    m = retry.size
    retry = replace(
        retry,
        t=retry.t + rng.integers(2 * SECOND, 30 * SECOND, m),
        intended=np.full(m, -1, dtype=np.int8),
        attempt=np.ones(m, dtype=np.int8),
        http=np.where(rng.random(m) < 0.9, 200, 503).astype(np.int32),
    )
    return first, retry


def _consistent(grants: _Grants, n_apps: int, rows: _Rows) -> Bool:
    """Which rows have the status and cause they were built to have; the others are dropped.

    Latency or a retry delay can push an authorized delivery past its grant's end, a
    misroute into a grant, or a collision's retry past the intended app's grant. Dropping
    those keeps every authorized row strictly covered, every injected row a misdelivery (of
    its intended reason, for base misroutes), and each label true: a collision's intended
    app covered, and lag exactly for the rows labelled so.
    """
    # An authorized row's grant covered its event; the row is at or after the event, so that
    # grant still covers it while it is before the grant's end. (Rows covered only by another
    # overlapping grant are dropped too, which is harmless.)
    keep = (rows.t < LOG_END) & (rows.t < grants.end[np.maximum(rows.grant, 0)])
    inj = np.flatnonzero(rows.injected)
    user, t, cause = rows.user[inj], rows.t[inj], rows.cause[inj]
    status, last_end = _classify(grants, n_apps, user, rows.app[inj], t)
    intended = rows.intended[inj]
    lag = (status == AFTER_REVOCATION) & (t - last_end <= REVOCATION_GRACE)
    meant = np.ones(inj.size, dtype=np.bool_)  # a collision's intended app holds a grant
    col = np.flatnonzero(cause == COLLISION)
    intended_app = rows.intended_app[inj][col].astype(np.int64)
    meant[col] = _classify(grants, n_apps, user[col], intended_app, t[col])[0] == COVERED
    keep[inj] = (
        (t < LOG_END)
        & (status != COVERED)
        & ((intended < 0) | (status == intended))
        & (lag == (cause == LAG))
        & meant
    )
    return keep


@dataclass(frozen=True)
class _Batch:
    """Generated events and their delivery rows, with which rows to keep."""

    events: _Events
    rows: list[_Rows]
    keep: list[Bool]


def _batch(
    rng: np.random.Generator, grants: _Grants, n_apps: int, events: _Events, rows: _Rows
) -> _Batch:
    first, retry = _attempts(rng, rows)
    return _Batch(
        events=events,
        rows=[first, retry],
        keep=[_consistent(grants, n_apps, first), _consistent(grants, n_apps, retry)],
    )


def _normal_batch(
    rng: np.random.Generator, pop: _Population, grants: _Grants, n_events: int, ev_offset: int
) -> _Batch:
    """Authorized traffic: events placed uniformly in time inside grant coverage."""
    weights = grants.anchor_span.astype(np.float64)
    counts = rng.multinomial(n_events, weights / weights.sum())
    gi = np.repeat(np.arange(counts.size, dtype=np.int64), counts)
    t = grants.anchor_lo[gi] + rng.integers(0, grants.anchor_span[gi])
    # Some events land exactly on granted_at, with no latency: covered, by the half-open rule.
    exact = (rng.random(gi.size) < P_EXACT_GRANT_START) & (grants.start[gi] >= LOG_START)
    t = np.where(exact, grants.start[gi], t)
    etype = _draw_types(rng, gi.size, NORMAL_MIX)
    events, sub_ev, sub_user, _ = _account_events(rng, pop.n_users, grants.user[gi], t, etype)
    ev, user, row_grant = _fan_out(grants, sub_ev, sub_user, t)
    delay = np.where(exact[ev], 0, _latency(rng, ev.size))
    t_row = t[ev] + delay
    rows = _new_rows(ev + ev_offset, user, grants.app[row_grant], t_row, row_grant, False)
    return _batch(rng, grants, pop.n_apps, events, rows)
