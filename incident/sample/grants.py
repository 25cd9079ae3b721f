"""Grant rows, the authorizations every delivery is judged against, and rule 3 over them.

Each user authorizes a few apps; most (user, app) keys hold one grant row, the rest a
re-grant after a revocation, a second grant while the first is active, an exact duplicate
from ingestion, or a zero-length grant, because those are the shapes a correct scan must
handle. The rows are laid out sorted by key, with per-key and per-user ranges, so later
stages can fan events out to a user's apps and `_classify` can apply DESIGN.md's rule 3 to
millions of candidate deliveries at once, to accept or reject them as they are generated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from incident.sample.constants import (
    AFTER_REVOCATION,
    BEFORE_GRANT,
    COVERED,
    DAY,
    DUPLICATE,
    GRANT_SHAPE_MIX,
    I8,
    I64,
    KEYS_PER_USER,
    LOG_END,
    LOG_START,
    NO_END,
    NO_GRANT,
    OVERLAP,
    REGRANT,
    SECOND,
    ZERO_LENGTH,
    Bool,
)
from incident.sample.population import _Population


@dataclass(frozen=True)
class _Grants:
    """Grant rows sorted by (user, app, start, end), with per-key and per-user ranges."""

    user: I64
    app: I64
    start: I64
    end: I64  # NO_END while active
    key_code: I64  # sorted unique user * n_apps + app
    key_start: I64  # first row of each key
    key_count: I64
    user_start: I64  # first row of each user (by user index)
    user_count: I64
    anchor_lo: I64  # part of [start, end) inside the logs, to place covered deliveries
    anchor_span: I64


def _duration(rng: np.random.Generator, size: int, mean_days: float, min_seconds: int) -> I64:
    """Exponential durations in whole seconds, returned in microseconds."""
    seconds = np.maximum(rng.exponential(mean_days * 86_400, size), min_seconds)
    return seconds.astype(np.int64) * SECOND


def _grant_keys(rng: np.random.Generator, pop: _Population) -> I64:
    """The distinct (user, app) keys, as sorted codes user * n_apps + app."""
    user = np.repeat(
        np.arange(pop.n_users, dtype=np.int64), rng.poisson(KEYS_PER_USER, pop.n_users)
    )
    app = rng.choice(pop.n_apps, size=user.size, p=pop.grant_p).astype(np.int64)
    code = np.sort(user * pop.n_apps + app)
    distinct: I64 = code[np.concatenate([[True], code[1:] != code[:-1]])]
    return distinct


def _first_grants(rng: np.random.Generator, shape: I64) -> tuple[I64, I64]:
    """Each key's first grant: (start, end), recorded to the second. A third predate the logs."""
    n = shape.size
    early = rng.random(n) < 0.35
    g1 = np.where(
        early,
        rng.integers(LOG_START - 730 * DAY, LOG_START, n),
        rng.integers(LOG_START, LOG_END - DAY, n),
    )
    g1 = g1 // SECOND * SECOND
    revoked = (rng.random(n) < 0.3) | (shape == REGRANT)
    r1 = np.where(revoked, g1 + _duration(rng, n, 240, 3600), NO_END)
    r1 = np.where(shape == ZERO_LENGTH, g1, r1)  # valid per decisions.md, covers no instant
    return g1, np.where(r1 >= LOG_END, NO_END, r1)


def _second_grants(rng: np.random.Generator, shape: I64, g1: I64, r1: I64) -> tuple[I64, I64, Bool]:
    """Each key's second row (start, end) and which keys have one.

    A re-grant after the revocation (sometimes at the very instant), a second grant while
    the first is active, or an exact duplicate from ingestion.
    """
    n = shape.size
    r1_or_end = np.minimum(r1, LOG_END)
    gap = np.where(rng.random(n) < 0.05, 0, _duration(rng, n, 45, 60))
    inside = ((r1_or_end - g1) * rng.random(n)).astype(np.int64) // SECOND * SECOND
    g2 = np.select([shape == REGRANT, shape == OVERLAP], [r1_or_end + gap, g1 + inside], default=g1)
    r2 = np.where(rng.random(n) < 0.3, g2 + _duration(rng, n, 240, 3600), NO_END)
    r2 = np.where(shape == DUPLICATE, r1, r2)
    r2 = np.where(r2 >= LOG_END, NO_END, r2)
    # A re-grant needs a revocation before the snapshot; later ones have not happened yet.
    second = (
        np.isin(shape, [REGRANT, OVERLAP, DUPLICATE])
        & (g2 < LOG_END)
        & ~((shape == REGRANT) & (r1 == NO_END))
    )
    return g2, r2, second


def _grant_rows(
    code: I64, n_apps: int, first: tuple[I64, I64], second: tuple[I64, I64], has_second: Bool
) -> tuple[I64, I64, I64, I64, I64, I64]:
    """Rows laid out by key: (user, app, start, end, key start, key count).

    Codes are sorted (user, then app) and each key's rows by (start, end), so a key's rows
    are adjacent and its first row starts earliest.
    """
    (g1, r1), (g2, r2) = first, second
    swap = has_second & ((g2 < g1) | ((g2 == g1) & (r2 < r1)))
    key_count = 1 + has_second.astype(np.int64)
    key_start = np.cumsum(key_count) - key_count
    user, app = np.repeat(code // n_apps, key_count), np.repeat(code % n_apps, key_count)
    start = np.empty(user.size, dtype=np.int64)
    end = np.empty(user.size, dtype=np.int64)
    start[key_start], end[key_start] = np.where(swap, g2, g1), np.where(swap, r2, r1)
    later = key_start[has_second] + 1
    start[later] = np.where(swap, g1, g2)[has_second]
    end[later] = np.where(swap, r1, r2)[has_second]
    return user, app, start, end, key_start, key_count


def _grants(rng: np.random.Generator, pop: _Population) -> _Grants:
    code = _grant_keys(rng, pop)
    shape = rng.choice(len(GRANT_SHAPE_MIX), size=code.size, p=GRANT_SHAPE_MIX)
    g1, r1 = _first_grants(rng, shape)
    g2, r2, has_second = _second_grants(rng, shape, g1, r1)
    user, app, start, end, key_start, key_count = _grant_rows(
        code, pop.n_apps, (g1, r1), (g2, r2), has_second
    )
    user_start = np.searchsorted(user, np.arange(pop.n_users), side="left")
    user_end = np.searchsorted(user, np.arange(pop.n_users), side="right")
    anchor_lo = np.maximum(start, LOG_START)
    return _Grants(
        user=user,
        app=app,
        start=start,
        end=end,
        key_code=code,
        key_start=key_start,
        key_count=key_count,
        user_start=user_start.astype(np.int64),
        user_count=(user_end - user_start).astype(np.int64),
        anchor_lo=anchor_lo,
        anchor_span=np.maximum(np.minimum(end, LOG_END) - anchor_lo, 0),
    )


def _expand(starts: I64, counts: I64) -> tuple[I64, I64]:
    """For each parent i, the positions starts[i] .. starts[i]+counts[i]-1, flattened.

    Returns (parent index, position) per output element: the vectorised nested loop.
    """
    parent = np.repeat(np.arange(counts.size, dtype=np.int64), counts)
    first = np.cumsum(counts) - counts
    return parent, np.arange(parent.size, dtype=np.int64) - first[parent] + starts[parent]


def _classify(grants: _Grants, n_apps: int, user: I64, app: I64, t: I64) -> tuple[I8, I64]:
    """Rule 3 of DESIGN.md against all grant rows of each (user, app): a status code, and the
    latest revocation at or before `t` (-1 if none), which tells revocation lag apart.

    Used to accept or reject generated candidates; truth.parquet is computed separately.
    """
    status = np.full(user.size, NO_GRANT, dtype=np.int8)
    last_end = np.full(user.size, -1, dtype=np.int64)
    if grants.key_code.size == 0 or user.size == 0:
        return status, last_end
    code = user * n_apps + app
    k = np.minimum(np.searchsorted(grants.key_code, code), grants.key_code.size - 1)
    idx = np.flatnonzero(grants.key_code[k] == code)
    counts = grants.key_count[k[idx]]
    parent, gi = _expand(grants.key_start[k[idx]], counts)
    tt = t[idx][parent]
    covers = (grants.start[gi] <= tt) & (tt < grants.end[gi])
    covered = np.bincount(parent, weights=covers, minlength=idx.size) > 0
    if idx.size:  # every key has a row, so each parent's rows start at its cumulative count
        ended_at = np.where(grants.end[gi] <= tt, grants.end[gi], -1)
        last_end[idx] = np.maximum.reduceat(ended_at, np.cumsum(counts) - counts)
    ended = last_end[idx] >= 0
    status[idx] = np.where(covered, COVERED, np.where(ended, AFTER_REVOCATION, BEFORE_GRANT))
    return status, last_end
