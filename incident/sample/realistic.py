"""Realistic mode: the messier evidence of real delivery logs, over the assembled sample.

`incident sample --realistic` (`generate_sample(..., realistic=True)`) builds exactly the
default data set, then changes only evidence columns as the files are written, drawing from
an RNG stream of its own (seeded by `(seed, REALISTIC_STREAM)`), so the default output is
untouched and the same arguments still give byte-identical files:

- moving endpoints: the apps on one resolved IP (a hosting group) move together, at one
  instant drawn uniformly inside the default window, to a fresh address (198.18.0.0/15,
  which no app uses otherwise). Groups of shared hosting move, in random order, until at
  least MOVED_SHARE of the apps on shared hosting have moved; an app alone on its IP moves
  with chance P_MOVE_ALONE. Deliveries from the switch on carry the new `resolved_ip`;
  apps.parquet, a snapshot taken after the incident, shows only the latest. Because
  co-hosted apps always move together, an injected collision's receiving and intended apps
  are on the same (IP, path) at the collision instant, as in the default mode.
- URLs as called: half of the delivery rows carry `webhook_url` with an explicit port
  (`:443`) and a query string (`?crc_token=<16 hex digits>`); apps.parquet keeps the bare URL.
- missing fields: `backend_host` is null on P_NULL_HOST of the delivery rows, at random,
  collisions and their triggers included.

truth.parquet is unchanged: `cause` and `intended_app_id` say how each misdelivery was
generated, not what evidence survived. Per-row draws come from a counter-based hash
(splitmix64) of the delivery row number, keyed from the stream, so each day file is edited
on its own, in any order, without per-row arrays for the whole data set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from incident.sample.constants import I64, NO_END, SECOND, WINDOW_SINCE, WINDOW_UNTIL, Bool

U64 = npt.NDArray[np.uint64]
REALISTIC_STREAM = 0x5EA1
MOVED_SHARE = 0.3  # of the apps on shared hosting, at least
P_MOVE_ALONE = 0.2
P_PORT_AND_QUERY = 0.5  # drawn from the hash's top bit
P_NULL_HOST = 0.03
_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def _mix(z: U64) -> U64:
    """splitmix64's finaliser: a bijective scramble of 64-bit words (wrapping arithmetic)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _hex(values: U64) -> pa.Array:
    """Each word as 16 lower-case hex digits."""
    octets = values.astype(">u8").view(np.uint8).reshape(-1, 8)
    digits = np.empty((values.size, 16), dtype=np.uint8)
    digits[:, 0::2] = _HEX[octets >> 4]
    digits[:, 1::2] = _HEX[octets & 15]
    fixed = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(16), values.size, [None, pa.py_buffer(digits.tobytes())]
    )
    return fixed.cast(pa.binary()).cast(pa.string())


def _moved_groups(rng: np.random.Generator, size: I64) -> Bool:
    """Which hosting groups (of `size` apps each) move: shared groups in random order until
    MOVED_SHARE of their apps have, and each single app with chance P_MOVE_ALONE."""
    shared = np.flatnonzero(size >= 2)
    shared = shared[rng.permutation(shared.size)]
    apps_moved = np.cumsum(size[shared])
    n_groups = (
        int(np.searchsorted(apps_moved, MOVED_SHARE * apps_moved[-1])) + 1 if shared.size else 0
    )
    moved = rng.random(size.size) < P_MOVE_ALONE
    moved[size >= 2] = False
    moved[shared[:n_groups]] = True
    return moved


@dataclass(frozen=True)
class _Realism:
    """The realistic evidence per app index, and the per-row draws' key."""

    key: np.uint64
    switch: I64  # when the app moved (µs), NO_END if it did not
    ips: pa.Array  # resolved IP per app before the move, then per app after it (2n)
    url: pa.Array  # bare webhook URL per app
    url_port: pa.Array  # the same with ':443' after the host

    def latest(self, app_strings: pl.DataFrame) -> pl.DataFrame:
        """The app strings with each app's latest IP, as a registry taken afterwards shows."""
        n = app_strings.height
        return app_strings.with_columns(resolved_ip=pl.Series(self.ips.slice(n, n)))

    def edit(self, table: pa.Table, first_row: int, app: I64, at: I64) -> pa.Table:
        """A day's delivery table (rows first_row.. of the data set) with realistic evidence."""
        n = app.size
        state = self.key + (np.arange(first_row, first_row + n, dtype=np.uint64) + 1) * _GAMMA
        h = _mix(state)
        called = pa.array((h >> np.uint64(63)) == 1)
        no_host = pa.array(((h >> np.uint64(32)) & np.uint64(0x7FFFFFFF)) < P_NULL_HOST * 2**31)
        token = _hex(_mix(h ^ _GAMMA))
        apps = pa.array(app)
        url = pc.if_else(
            called,
            pc.binary_join_element_wise(self.url_port.take(apps), token, "?crc_token="),
            self.url.take(apps),
        )
        moved = at >= self.switch[app]
        ip = self.ips.take(pa.array(app + moved * self.switch.size))
        host = table.column("backend_host").combine_chunks()
        host = pc.if_else(no_host, pa.scalar(None, pa.string()), host)
        for name, column in (("webhook_url", url), ("resolved_ip", ip), ("backend_host", host)):
            i = table.schema.get_field_index(name)
            table = table.set_column(i, table.schema.field(i), column)
        return table


def _realism(seed: int, app_strings: pl.DataFrame) -> _Realism:
    """Draw the moves and the per-row key from the realistic stream of `seed`."""
    rng = np.random.default_rng([seed, REALISTIC_STREAM])
    key = np.uint64(rng.integers(0, 2**63, dtype=np.int64))
    old = app_strings["resolved_ip"]
    _, group, size = np.unique(old.to_numpy(), return_inverse=True, return_counts=True)
    moved = _moved_groups(rng, size.astype(np.int64))
    when = rng.integers(WINDOW_SINCE // SECOND, WINDOW_UNTIL // SECOND, size.size) * SECOND
    fresh = np.cumsum(moved) - 1  # the k-th moved group gets the k-th fresh address
    switch = np.where(moved, when, NO_END)[group].astype(np.int64)
    new = (
        pl.DataFrame({"k": fresh[group], "moved": moved[group], "old": old})
        .select(
            pl.when(pl.col("moved"))
            .then(
                pl.lit("198.")
                + (18 + pl.col("k") // 65_024).cast(pl.String)
                + "."
                + (pl.col("k") // 254 % 256).cast(pl.String)
                + "."
                + (pl.col("k") % 254 + 1).cast(pl.String)
            )
            .otherwise(pl.col("old"))
        )
        .to_series()
    )
    url = app_strings["webhook_url"]
    return _Realism(
        key=key,
        switch=switch,
        ips=pa.concat_arrays([old.to_arrow().cast(pa.string()), new.to_arrow().cast(pa.string())]),
        url=url.to_arrow().cast(pa.string()),
        url_port=url.str.replace(r"^(https://[^/]+)", "${1}:443").to_arrow().cast(pa.string()),
    )
