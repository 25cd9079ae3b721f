"""Damaged inputs: whatever a Parquet file holds, `scan` ends with a result or one clear line.

Small valid inputs are written, then damaged: truncated, bits flipped, values replaced by
extremes (int64's bounds as timestamps of every unit, NaN, infinite and huge float IDs,
empty text, control characters), columns of the wrong type, or missing. The command line
must then exit 0, 2, 4 or 5, with at most one line on stderr, `error: …`, and never a
traceback or an internal error.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from incident.cli import cli

MS = 1_000
US = 1_000_000
# 2018-03-01T00:00:00Z, inside the default window; 2016-01-01, before it.
IN_WINDOW = 1_519_862_400
GRANTED = 1_451_606_400
INT64 = (-(2**63), 2**63 - 1)


def _times(seconds: list[int | None], unit: str = "us", tz: str | None = "UTC") -> pa.Array:
    per = {"s": 1, "ms": MS, "us": US, "ns": 10**9}[unit]
    return pa.array([None if s is None else s * per for s in seconds], pa.timestamp(unit, tz))


def deliveries() -> pa.Table:
    """An authorized delivery, a misdelivered direct message, and one outside the window."""
    return pa.table(
        {
            "delivery_id": ["d1", "d2", "d3"],
            "event_id": pa.array([1, 2, 3], pa.int64()),
            "delivered_at": _times([IN_WINDOW, IN_WINDOW + 60, GRANTED]),
            "app_id": pa.array([10, 20, 10], pa.int64()),
            "for_user_id": pa.array([1, 1, 2], pa.int64()),
            "event_type": ["tweet", "direct_message", "tweet"],
            "sender_id": pa.array([None, 5, None], pa.int64()),
            "recipient_id": pa.array([None, 1, None], pa.int64()),
            "webhook_url": ["https://a.example/hook", "https://b.example/hook", None],
            "resolved_ip": ["192.0.2.1", "192.0.2.1", None],
            "backend_host": ["web-1", "web-1", None],
            "http_status": pa.array([200, 200, 500], pa.int32()),
        }
    )


def authorizations() -> pa.Table:
    return pa.table(
        {
            "for_user_id": pa.array([1, 2], pa.int64()),
            "app_id": pa.array([10, 10], pa.int64()),
            "granted_at": _times([GRANTED, GRANTED]),
            "revoked_at": _times([None, IN_WINDOW + 3600]),
        }
    )


def apps() -> pa.Table:
    return pa.table(
        {
            "app_id": pa.array([10, 20], pa.int64()),
            "developer_id": ["dev-a", "dev-b"],
            "webhook_url": ["https://a.example/hook", "https://b.example/hook"],
            "resolved_ip": ["192.0.2.1", "192.0.2.1"],
        }
    )


BASES: dict[str, Callable[[], pa.Table]] = {
    "deliveries": deliveries,
    "authorizations": authorizations,
    "apps": apps,
}
ID_COLUMNS = {
    "deliveries": ["event_id", "app_id", "for_user_id", "delivery_id", "sender_id", "recipient_id"],
    "authorizations": ["for_user_id", "app_id"],
    "apps": ["app_id", "developer_id"],
}
TIME_COLUMNS = {
    "deliveries": ["delivered_at"],
    "authorizations": ["granted_at", "revoked_at"],
    "apps": [],
}
TEXT_COLUMNS = {
    "deliveries": ["event_type", "webhook_url", "resolved_ip", "backend_host"],
    "authorizations": [],
    "apps": ["webhook_url", "resolved_ip"],
}

# Replacement columns: (type, one value); the value lands in one row, the others keep theirs
# when the type allows, else become null.
EXTREME_TIMES: list[tuple[pa.DataType, Any]] = [
    *(
        (pa.timestamp(unit, tz), value)
        for unit in ("ms", "us", "ns")
        for tz in (None, "UTC", "Asia/Tokyo")
        for value in (*INT64, INT64[0] + 1)
    ),
    (pa.timestamp("ms", "UTC"), (2**63 - 1) // 1_000),  # a seconds value written as ms
    (pa.date32(), 2**31 - 1),
    (pa.date32(), -(2**31)),
    (pa.date64(), 2**63 - 1),
    (pa.int64(), INT64[1]),
    (pa.int64(), INT64[0]),
    (pa.uint64(), 2**64 - 1),
    (pa.string(), "9999-12-31T23:59:59Z"),
    (pa.string(), "0000-01-01"),
    (pa.string(), "2018-13-45T25:61:61+99:99"),
    (pa.string(), "2018-03-01T00:00:00.1234567890123Z"),
    (pa.string(), ""),
    (pa.string(), "\x00\x1b[2J\u202e"),
    (pa.float64(), float("nan")),
]
EXTREME_IDS: list[tuple[pa.DataType, Any]] = [
    *(
        (pa.float64(), value)
        for value in (
            float("nan"),
            float("inf"),
            float("-inf"),
            2.0**53,
            2.0**53 - 1,
            2.0**63,
            -(2.0**63),
            1e308,
            0.5,
            -0.0,
        )
    ),
    (pa.float32(), 2.0**24),
    (pa.float32(), float("nan")),
    (pa.float16(), 2048.0),
    (pa.int64(), INT64[0]),
    (pa.int64(), INT64[1]),
    (pa.uint64(), 2**64 - 1),
    (pa.decimal128(38, 0), Decimal(10**37)),
    (pa.decimal128(20, 4), Decimal("1.5")),
    (pa.string(), ""),
    (pa.string(), "   "),
    (pa.string(), "\x00"),
    (pa.string(), "1\n2\r\x1b[31m"),
    (pa.string(), '=HYPERLINK("x")'),
    (pa.large_string(), "9" * 400),
    (pa.dictionary(pa.int32(), pa.string()), "10"),
]
WRONG_TYPES: list[tuple[pa.DataType, Any]] = [
    (pa.list_(pa.int64()), [1, 2]),
    (pa.list_(pa.timestamp("ms", "UTC")), [INT64[1]]),
    (pa.struct([("a", pa.int64()), ("t", pa.timestamp("ms"))]), {"a": 1, "t": INT64[1]}),
    (pa.binary(), b"\xff\xfe\x00"),
    (pa.bool_(), True),
    (pa.null(), None),
    (pa.time64("ns"), 2**63 - 1),
    (pa.time32("ms"), 0),
    (pa.duration("ms"), INT64[1]),
    (pa.duration("ns"), INT64[0]),
    (pa.map_(pa.string(), pa.int64()), [("k", 1)]),
    (pa.float16(), 1.0),
    (pa.decimal256(76, 0), Decimal(10**70)),
    (pa.binary(3), b"abc"),
]


def _replace(table: pa.Table, column: str, dtype: pa.DataType, value: Any, row: int) -> pa.Table:
    """`table` with `column` (added when missing) of type `dtype`, `value` in `row`; its other
    values kept where they convert, else null."""
    try:
        values = table[column].cast(dtype).to_pylist() if column in table.column_names else None
    except (pa.ArrowException, ValueError, OverflowError):
        values = None
    values = values or [None] * table.num_rows
    values[row % table.num_rows] = value
    array = pa.array(values, dtype)
    if column in table.column_names:
        return table.set_column(table.column_names.index(column), column, array)
    return table.append_column(column, array)


@dataclass(frozen=True)
class Damage:
    """One change to one input: to its table before writing, or to its bytes after."""

    input: str
    kind: str  # value, drop, truncate, flip
    column: str = ""
    dtype: pa.DataType | None = None
    value: Any = None
    row: int = 0
    offsets: tuple[int, ...] = ()

    def table(self, table: pa.Table) -> pa.Table:
        if self.kind == "drop" and self.column in table.column_names:
            return table.drop_columns([self.column])
        if self.kind == "value":
            assert self.dtype is not None
            return _replace(table, self.column, self.dtype, self.value, self.row)
        return table

    def bytes(self, data: bytes) -> bytes:
        if self.kind == "truncate":
            return data[: self.offsets[0] % max(len(data), 1)]
        if self.kind == "flip" and data:
            damaged = bytearray(data)
            for offset in self.offsets:
                damaged[(offset // 8) % len(damaged)] ^= 1 << (offset % 8)
            return bytes(damaged)
        return data


INPUTS = st.sampled_from(["deliveries", "authorizations", "apps"])


@st.composite
def value_damage(draw: st.DrawFn) -> Damage:
    input_ = draw(INPUTS)
    kind = draw(st.sampled_from(["id", "time", "text", "wrong", "extra"]))
    columns = {
        "id": ID_COLUMNS[input_],
        "time": TIME_COLUMNS[input_] or ID_COLUMNS[input_],
        "text": TEXT_COLUMNS[input_] or ID_COLUMNS[input_],
        "wrong": [
            *ID_COLUMNS[input_],
            *TIME_COLUMNS[input_],
            *TEXT_COLUMNS[input_],
            *(["http_status"] if input_ == "deliveries" else []),
        ],
        "extra": ["note"],
    }[kind]
    values = {
        "id": EXTREME_IDS,
        "time": EXTREME_TIMES,
        "text": [*EXTREME_IDS[-8:], *WRONG_TYPES[:5]],
        "wrong": WRONG_TYPES,
        "extra": [*WRONG_TYPES, *EXTREME_TIMES],
    }[kind]
    dtype, value = draw(st.sampled_from(values))
    return Damage(
        input_, "value", draw(st.sampled_from(columns)), dtype, value, draw(st.integers(0, 2))
    )


@st.composite
def column_damage(draw: st.DrawFn) -> Damage:
    input_ = draw(INPUTS)
    return Damage(input_, "drop", draw(st.sampled_from(BASES[input_]().column_names)))


@st.composite
def byte_damage(draw: st.DrawFn) -> Damage:
    input_ = draw(INPUTS)
    kind = draw(st.sampled_from(["truncate", "flip"]))
    count = 1 if kind == "truncate" else draw(st.integers(1, 12))
    offsets = tuple(draw(st.lists(st.integers(0, 2**20), min_size=count, max_size=count)))
    return Damage(input_, kind, offsets=offsets)


def write_inputs(folder: Path, damages: list[Damage], with_apps: bool) -> dict[str, Path]:
    """The three inputs, damaged, as Parquet files in `folder`."""
    paths = {}
    for input_, base in BASES.items():
        if input_ == "apps" and not with_apps:
            continue
        mine = [d for d in damages if d.input == input_]
        table = base()
        for damage in mine:
            table = damage.table(table)
        path = folder / f"{input_}.parquet"
        pq.write_table(table, path, compression="none" if len(mine) % 2 else "snappy")
        data = path.read_bytes()
        for damage in mine:
            data = damage.bytes(data)
        path.write_bytes(data)
        paths[input_] = path
    return paths


runner = CliRunner()


def check_scan(damages: list[Damage], with_apps: bool) -> None:
    """Scan damaged inputs through the command line: a result or one clear line."""
    with tempfile.TemporaryDirectory() as folder:
        paths = write_inputs(
            Path(folder), damages, with_apps or any(d.input == "apps" for d in damages)
        )
        args = ["scan", "--deliveries", str(paths["deliveries"])]
        args += ["--authorizations", str(paths["authorizations"])]
        if "apps" in paths:
            args += ["--apps", str(paths["apps"])]
        result = runner.invoke(cli, [*args, "--out", str(Path(folder) / "out"), "-q"])
    output = result.stdout + result.stderr
    context = f"{damages}: exit {result.exit_code}, stderr {result.stderr!r}"
    assert result.exception is None or isinstance(result.exception, SystemExit), context
    assert result.exit_code in (0, 2, 4, 5), context
    assert "Traceback" not in output and "internal error" not in output, context
    if result.exit_code:
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), context


SETTINGS = settings(
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _run(strategy: st.SearchStrategy[list[Damage]], examples: int) -> int:
    """Run `check_scan` on `examples` damaged inputs; the number run."""
    ran = []

    @settings(SETTINGS, max_examples=examples)
    @given(damages=strategy, with_apps=st.booleans())
    def case(damages: list[Damage], with_apps: bool) -> None:
        ran.append(1)
        check_scan(damages, with_apps)

    case()
    return len(ran)


def test_damaged_values_and_types() -> None:
    damages = st.lists(st.one_of(value_damage(), column_damage()), min_size=1, max_size=3)
    assert _run(damages, 300) == 300


def test_damaged_bytes() -> None:
    damages = st.lists(byte_damage(), min_size=1, max_size=2)
    assert _run(damages, 300) == 300


def test_damage_of_both_kinds() -> None:
    damages = st.lists(st.one_of(value_damage(), byte_damage()), min_size=2, max_size=3)
    assert _run(damages, 100) == 100


def test_every_extreme_time_alone() -> None:
    # Not drawn: each of them in each time column, so that none is left to chance.
    for column, input_ in (("delivered_at", "deliveries"), ("granted_at", "authorizations")):
        for dtype, value in EXTREME_TIMES:
            check_scan([Damage(input_, "value", column, dtype, value, 1)], with_apps=False)
    for dtype, value in EXTREME_TIMES:
        check_scan([Damage("authorizations", "value", "revoked_at", dtype, value, 0)], False)
