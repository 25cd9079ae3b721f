"""Injected misdeliveries: deliveries to apps that held no grant at that instant, by cause.

About a third follow the incident's bug (`_collisions`): an event meant for app A also
reaches app B on the same IP and URL path while B has its own traffic from the same backend
host minutes earlier (the trigger, generated with it). Some arrive within the revocation
grace of a revocation (lag); the rest have no mechanism: apps that never had a grant (some
unregistered), deliveries long after a revocation or before the first grant, and copies to
a DM's other party or a second wrong app. Every candidate is checked against rule 3 before
it is kept, so each misroute has exactly the reason and cause it is labelled with;
`_misroute_batch` turns them into one batch of events with their authorized deliveries.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import numpy as np

from incident.sample.constants import (
    AFTER_REVOCATION,
    BEFORE_GRANT,
    BEFORE_SHARE,
    COLLISION,
    COLLISION_SHARE,
    COVERED,
    DAY,
    DM,
    I8,
    I32,
    I64,
    INJECTED_MIX,
    LAG,
    LAG_SHARE,
    LATE_SHARE,
    LOG_END,
    LOG_START,
    MAX_LAG,
    MIN_LATE,
    NO_GRANT,
    NORMAL_MIX,
    REVOCATION_GRACE,
    SECOND,
    TRIGGER_LEAD,
    TRIGGER_TRIES,
    UNEXPLAINED,
    URL_PATHS,
    WINDOW_SINCE,
    WINDOW_UNTIL,
    Bool,
)
from incident.sample.events import (
    _account_events,
    _Batch,
    _batch,
    _concat_events,
    _concat_rows,
    _draw_types,
    _Events,
    _fan_out,
    _latency,
    _new_rows,
    _Rows,
)
from incident.sample.grants import _classify, _duration, _Grants
from incident.sample.population import _Population


@dataclass(frozen=True)
class _Bases:
    """Base misroutes, one event each: for whom, to which app, when, and how each was built."""

    user: I64
    app: I64  # the receiving app
    t_event: I64
    t: I64  # when the misroute is delivered: at its event, or a latency after it
    reason: I8  # the rule-3 status it was built to have
    cause: I8
    intended_app: I32  # the app a collision's event was meant for; -1 otherwise

    @property
    def size(self) -> int:
        return int(self.user.size)


def _bases(user: I64, app: I64, t: I64, reason: int, cause: int) -> _Bases:
    """Bases of one reason and cause, delivered at the instant of their event."""
    n = user.size
    return _Bases(
        user=user,
        app=app,
        t_event=t,
        t=t,
        reason=np.full(n, reason, dtype=np.int8),
        cause=np.full(n, cause, dtype=np.int8),
        intended_app=np.full(n, -1, dtype=np.int32),
    )


def _concat_bases(parts: Sequence[_Bases]) -> _Bases:
    return _Bases(
        **{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(_Bases)}
    )


@dataclass(frozen=True)
class _Triggers:
    """Per collision, the receiving app's own delivery shortly before the misroute."""

    grant: I64  # the grant row it is delivered under: its user and (receiving) app
    t_event: I64
    t: I64

    def take(self, idx: I64) -> _Triggers:
        return _Triggers(self.grant[idx], self.t_event[idx], self.t[idx])


def _outside_window_times(rng: np.random.Generator, n: int) -> I64:
    """Uniform over the logs minus the default window."""
    before = WINDOW_SINCE - LOG_START
    u = rng.integers(0, before + (LOG_END - WINDOW_UNTIL), n)
    return np.where(u < before, LOG_START + u, WINDOW_UNTIL + (u - before))


def _shared_ip_neighbour(rng: np.random.Generator, pop: _Population, app: I64) -> I64:
    """Another app on the same IP as `app`, or -1 where it has none."""
    lo, size = pop.ip_group_lo[app], pop.ip_group_size[app]
    step = rng.integers(1, np.maximum(size, 2))
    pos = lo + (pop.ip_pos[app] - lo + step) % size
    return np.where(size > 1, pop.ip_order[pos], -1)


def _first(mask: Bool, k: int) -> I64:
    return np.flatnonzero(mask)[:k]


def _endpoint_partners(pop: _Population, app_count: I64) -> tuple[I64, I64, I64, I64]:
    """Apps with grants grouped by endpoint (IP and path), so that B is drawn among A's
    partners: (apps by endpoint, each app's group start and size there, each app's position).
    """
    endpoint = pop.app_ip * len(URL_PATHS) + pop.app_path
    members = np.flatnonzero(app_count > 0)
    order = members[np.argsort(endpoint[members], kind="stable")]
    lo = np.searchsorted(endpoint[order], endpoint, side="left")
    size = np.searchsorted(endpoint[order], endpoint, side="right") - lo
    pos = np.zeros(pop.n_apps, dtype=np.int64)
    pos[order] = np.arange(order.size)
    return order, lo, size, pos


def _intended_events(
    rng: np.random.Generator, grants: _Grants, eligible: I64, m: int
) -> tuple[I64, I64, I64, I64]:
    """`m` events of user u meant for app A: (u, A, event time, delivery time).

    The event happens while u's grant of A is active, mostly inside the window (a grant
    entirely outside it gives an uncovered instant, which the collision checks reject).
    """
    ga = eligible[rng.integers(0, eligible.size, m)]
    user, a = grants.user[ga], grants.app[ga]
    lo_t, hi_t = grants.anchor_lo[ga], grants.anchor_lo[ga] + grants.anchor_span[ga]
    in_window = rng.random(m) < 0.9
    lo_t = np.where(in_window, np.maximum(lo_t, WINDOW_SINCE), lo_t)
    hi_t = np.where(in_window, np.minimum(hi_t, WINDOW_UNTIL), hi_t)
    t_event = lo_t + rng.integers(0, np.maximum(hi_t - lo_t, 1))
    return user, a, t_event, t_event + _latency(rng, m)


def _trigger_candidates(
    rng: np.random.Generator, grants: _Grants, app_count: I64, b: I64, user: I64, t: I64
) -> tuple[_Triggers, Bool]:
    """Per misroute to app B at `t`, a trigger TRIGGER_LEAD before it, and whether one fits.

    The trigger's user: the first of a few random grants of B that covers the trigger's
    event and delivery and is not u's.
    """
    m = b.size
    by_app = np.argsort(grants.app, kind="stable")
    app_lo = np.cumsum(app_count) - app_count
    offset = rng.integers(0, app_count[b][:, None], (m, TRIGGER_TRIES))
    tries = by_app[app_lo[b][:, None] + offset]
    trigger_t = t - rng.integers(TRIGGER_LEAD[0], TRIGGER_LEAD[1] + 1, m)
    trigger_event = trigger_t - _latency(rng, m)
    fits = (
        (grants.start[tries] <= trigger_event[:, None])
        & (trigger_t[:, None] < grants.end[tries])
        & (grants.user[tries] != user[:, None])
    )
    trigger_grant = tries[np.arange(m), fits.argmax(axis=1)]
    return _Triggers(trigger_grant, trigger_event, trigger_t), fits.any(axis=1)


def _collisions(
    rng: np.random.Generator, pop: _Population, grants: _Grants, k: int
) -> tuple[_Bases, _Triggers]:
    """Up to `k` base misroutes by the incident's bug, each with its trigger.

    User u's event, meant for app A (u's grant of A covers it), also reaches app B, which
    has A's IP and URL path and no grant of u covering that instant. The bug needs B to be
    active on the same backend host: the trigger is a delivery to B for another user whose
    grant of B covers it, TRIGGER_LEAD before the misroute. Only apps with grants (so with
    users, and registered) take part; where no two of them share an endpoint, none happen.
    """
    n_apps = pop.n_apps
    app_count = np.bincount(grants.app, minlength=n_apps)
    order, lo, size, pos = _endpoint_partners(pop, app_count)
    eligible = np.flatnonzero((size[grants.app] > 1) & (grants.anchor_span > 0))
    if k == 0 or eligible.size == 0:
        none = np.zeros(0, dtype=np.int64)
        return _bases(none, none, none, NO_GRANT, COLLISION), _Triggers(none, none, none)

    m = 8 * k + 64
    user, a, t_event, t = _intended_events(rng, grants, eligible, m)
    b = order[lo[a] + (pos[a] - lo[a] + rng.integers(1, size[a])) % size[a]]
    status, last_end = _classify(grants, n_apps, user, b, t)
    # Not also revocation lag of (u, B): each misroute has one mechanism.
    lag = (status == AFTER_REVOCATION) & (t - last_end <= REVOCATION_GRACE)
    meant = _classify(grants, n_apps, user, a, t)[0] == COVERED
    triggers, found = _trigger_candidates(rng, grants, app_count, b, user, t)

    ok = meant & (status != COVERED) & ~lag & found
    pick = _first(ok & (t < LOG_END) & (triggers.t_event >= LOG_START), k)
    bases = _Bases(
        user=user[pick],
        app=b[pick],
        t_event=t_event[pick],
        t=t[pick],
        reason=status[pick],
        cause=np.full(pick.size, COLLISION, dtype=np.int8),
        intended_app=a[pick].astype(np.int32),
    )
    return bases, triggers.take(pick)


def _after_revocation(
    rng: np.random.Generator, pop: _Population, grants: _Grants, k: int, late: bool
) -> _Bases:
    """Up to `k` deliveries after a revocation and before any re-grant of the key: within
    MAX_LAG of it, some at the very instant (revocation lag), or, `late`, more than MIN_LATE
    after the key's last revocation (unexplained)."""
    revoked = np.flatnonzero((grants.end >= LOG_START) & (grants.end < LOG_END))
    m = 4 * k + 32
    row = revoked[rng.integers(0, revoked.size, m)] if revoked.size else np.zeros(0, dtype=np.int64)
    m = row.size
    if late:
        delta = _duration(rng, m, 20, MIN_LATE // SECOND + 1) + rng.integers(0, SECOND, m)
    else:
        delta = np.where(rng.random(m) < 0.2, 0, rng.integers(1, MAX_LAG + 1, m))
    user, app, t = grants.user[row], grants.app[row], grants.end[row] + delta
    status, last_end = _classify(grants, pop.n_apps, user, app, t)
    # Another row of the key may have been revoked later than this one, closer to t.
    timely = (t - last_end > MIN_LATE) if late else (t - last_end <= MAX_LAG)
    pick = _first((status == AFTER_REVOCATION) & (t < LOG_END) & timely, k)
    return _bases(user[pick], app[pick], t[pick], AFTER_REVOCATION, UNEXPLAINED if late else LAG)


def _no_grant(rng: np.random.Generator, pop: _Population, grants: _Grants, k: int) -> _Bases:
    """Up to `k` deliveries for a user to an app the user never authorized (unexplained).

    The event of a user who authorized app A goes to an app on A's IP with another path (a
    neighbour, without the bug's signature), else to a random app; the first few go to
    unregistered apps.
    """
    n_apps = pop.n_apps
    m = 4 * k + 32
    key = rng.integers(0, grants.key_code.size, m)
    user, via = grants.key_code[key] // n_apps, grants.key_code[key] % n_apps
    app = _shared_ip_neighbour(rng, pop, via)
    random_app = rng.choice(n_apps, m, p=pop.pick_p).astype(np.int64)
    same_path = pop.app_path[app] == pop.app_path[via]
    app = np.where((app < 0) | same_path | (rng.random(m) < 0.3), random_app, app)
    unregistered = np.flatnonzero(~pop.registered)
    n_forced = max(unregistered.size, math.ceil(0.12 * k))
    app[:n_forced] = unregistered[np.arange(n_forced) % unregistered.size]
    t = np.where(
        rng.random(m) < 0.9,
        rng.integers(WINDOW_SINCE, WINDOW_UNTIL, m),
        _outside_window_times(rng, m),
    )
    # Exactly on the window bounds: `since` is inside, `until` is outside.
    t[0], t[1] = WINDOW_SINCE, WINDOW_UNTIL
    pick = _first(_classify(grants, n_apps, user, app, t)[0] == NO_GRANT, k)
    return _bases(user[pick], app[pick], t[pick], NO_GRANT, UNEXPLAINED)


def _before_grant(rng: np.random.Generator, grants: _Grants, n_apps: int, k: int) -> _Bases:
    """Up to `k` deliveries shortly before the first grant of a key that starts inside the
    logs (unexplained)."""
    later = np.flatnonzero(grants.start[grants.key_start] > LOG_START + DAY)
    m = 4 * k + 32
    key = later[rng.integers(0, later.size, m)] if later.size else np.zeros(0, dtype=np.int64)
    m = key.size
    row = grants.key_start[key]
    t = grants.start[row] - _duration(rng, m, 20, 1) + rng.integers(0, SECOND, m)
    status = _classify(grants, n_apps, grants.user[row], grants.app[row], t)[0]
    pick = _first((status == BEFORE_GRANT) & (t >= LOG_START), k)
    return _bases(grants.user[row][pick], grants.app[row][pick], t[pick], BEFORE_GRANT, UNEXPLAINED)


def _misroute_candidates(
    rng: np.random.Generator, pop: _Population, grants: _Grants, k: int, n_collisions: int
) -> _Bases:
    """The base misroutes besides the `n_collisions` collisions, about `k` in all with them
    (at least one of each kind), each checked against rule 3."""
    k_lag = max(1, round(k * LAG_SHARE))
    k_late = max(1, round(k * LATE_SHARE))
    k_before = max(1, round(k * BEFORE_SHARE))
    k_no_grant = max(1, k - n_collisions - k_lag - k_late - k_before)
    ng = _no_grant(rng, pop, grants, k_no_grant)
    lag = _after_revocation(rng, pop, grants, k_lag, late=False)
    late = _after_revocation(rng, pop, grants, k_late, late=True)
    bg = _before_grant(rng, grants, pop.n_apps, k_before)
    return _concat_bases([ng, lag, late, bg])


def _trigger_events(
    rng: np.random.Generator, pop: _Population, grants: _Grants, triggers: _Triggers
) -> tuple[_Events, I64, I64]:
    """The triggers' events: (events, subscriber event index, subscriber)."""
    events, sub_ev, sub_user, _ = _account_events(
        rng,
        pop.n_users,
        grants.user[triggers.grant],
        triggers.t_event,
        _draw_types(rng, triggers.grant.size, NORMAL_MIX),
    )
    return events, sub_ev, sub_user


def _trigger_rows(grants: _Grants, triggers: _Triggers, first_event: int) -> _Rows:
    """The trigger's own delivery to the receiving app, under the grant that was checked."""
    n_col = triggers.grant.size
    return _new_rows(
        first_event + np.arange(n_col, dtype=np.int64),
        grants.user[triggers.grant],
        grants.app[triggers.grant],
        triggers.t,
        triggers.grant,
        False,
        trigger=True,
    )


def _base_rows(bases: _Bases) -> _Rows:
    """The base misroutes themselves, one per event (events 0..n-1)."""
    n = bases.size
    return _new_rows(
        np.arange(n, dtype=np.int64),
        bases.user,
        bases.app,
        bases.t,
        np.full(n, -1),
        True,
        bases.reason,
        cause=bases.cause,
        intended_app=bases.intended_app,
    )


def _derived_misroutes(
    rng: np.random.Generator, pop: _Population, bases: _Bases, etype: I8, other: I64
) -> tuple[_Rows, _Rows]:
    """Unexplained copies of some bases: for the other party of a DM, and to a second wrong
    app. Not of collisions: the bug misroutes one delivery, not its neighbours."""
    n = bases.size
    derive = bases.cause != COLLISION
    dm_other = np.flatnonzero((etype == DM) & derive & (rng.random(n) < 0.3))
    other_party = _new_rows(
        dm_other,
        other[dm_other],
        bases.app[dm_other],
        bases.t[dm_other] + _latency(rng, dm_other.size),
        np.full(dm_other.size, -1),
        True,
    )
    fanned = np.flatnonzero(derive & (rng.random(n) < 0.15))
    second_app = rng.choice(pop.n_apps, fanned.size, p=pop.pick_p).astype(np.int64)
    second = _new_rows(
        fanned,
        bases.user[fanned],
        second_app,
        bases.t[fanned] + _latency(rng, fanned.size),
        np.full(fanned.size, -1),
        True,
    )
    return other_party, second


def _misroute_batch(rng: np.random.Generator, pop: _Population, grants: _Grants, k: int) -> _Batch:
    """Events with injected misdeliveries, plus their authorized deliveries.

    Each base misroute is one event; it is also delivered normally to the apps its parties
    did authorize (a collision's intended app among them). A collision comes with its
    trigger, another event delivered to the receiving app from the same backend host. Other
    bases are sometimes misrouted for the other party of a DM or to a second wrong app as
    well (unexplained). Any misroute may be retried, keeping its cause.
    """
    collisions, triggers = _collisions(rng, pop, grants, round(k * COLLISION_SHARE))
    bases = _concat_bases([collisions, _misroute_candidates(rng, pop, grants, k, collisions.size)])
    n, n_col = bases.size, collisions.size
    etype = _draw_types(rng, n, INJECTED_MIX)
    events, sub_ev, sub_user, other = _account_events(
        rng, pop.n_users, bases.user, bases.t_event, etype
    )
    trigger_events, trigger_sub_ev, trigger_sub_user = _trigger_events(rng, pop, grants, triggers)
    # Collisions come first among the bases: each trigger runs on its collision's host.
    events = _concat_events([events, replace(trigger_events, host=events.host[:n_col])])
    sub_ev = np.concatenate([sub_ev, n + trigger_sub_ev])
    sub_user = np.concatenate([sub_user, trigger_sub_user])
    ev, fan_user, row_grant = _fan_out(grants, sub_ev, sub_user, events.t)
    normal = _new_rows(
        ev, fan_user, grants.app[row_grant], events.t[ev] + _latency(rng, ev.size), row_grant, False
    )
    other_party, second = _derived_misroutes(rng, pop, bases, etype, other)
    rows = _concat_rows(
        [_trigger_rows(grants, triggers, n), normal, _base_rows(bases), other_party, second]
    )
    # One row per (event, user, app), the first: a trigger replaces its fan-out copy, and
    # the same delivery is never both authorized and misrouted.
    code = (rows.ev * pop.n_users + rows.user) * pop.n_apps + rows.app
    _, first_idx = np.unique(code, return_index=True)
    return _batch(rng, grants, pop.n_apps, events, rows.take(np.sort(first_idx)))
