"""Webhook JSON lines a block at a time, parsed column-wise: the fast path of ingest.

A block of lines is parsed by pyarrow's JSON reader with an explicit schema that names only
the whitelisted fields, `unexpected_field_behavior="ignore"`: every other field is skipped
by the parser and never becomes a column, so the schema is the whitelist. Each known event
array is then exploded and the canonical columns built with polars, as the `raw_frame` that
`normalise` builds from the line-by-line rows.

The reader is strict where the line-by-line path has to decide: a value of another JSON type
than the schema's, a field named twice, a line that is not one JSON object make it refuse the
block. Only lines the fast path can judge exactly as `records.json_rows` would are taken;
every other line (damaged or unusual: a float or nested ID, an unknown event array, an event
without an ID, an escaped key, deep nesting) goes through `json_rows` itself, and a block the
reader refuses is split in halves until the refusing lines are found. Both kinds of rows are
merged in line order, so the output is the same either way (`tests/test_ingest_blocks.py`).
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import polars as pl
import pyarrow as pa
import pyarrow.json as pj

from incident.config import ColumnMap
from incident.ingest.envelope import ARRAYS, EVENT_ID, LINE_FIELDS
from incident.ingest.normalise import EVENT, LINE, PROBLEM, raw_frame
from incident.ingest.records import LineCounts, json_rows
from incident.ingest.sources import Line
from incident.schema import COLUMNS, EventType, Input

Leaf = tuple[str, ...]
# Events are numbered across the arrays in sorted name order, as `envelope.flatten` does.
_KNOWN = tuple(sorted(ARRAYS))
# More brackets than this go line by line: Python's parser refuses deep nesting, pyarrow's not.
_MAX_BRACKETS = 256
# A refused piece of a block this small is read line by line rather than split again.
_SMALLEST = 8
_NAME = re.compile(r"^[A-Za-z0-9_]+$")
# Sniffed first character of a value: `"` text, a digit an integer, `.eE` a float, `tfn`.
_VALUE = r'"\s*:\s*(-?[0-9]+[.eE]|-?[0-9]|["tfn{\[])'
_KINDS = {'"': "s", **dict.fromkeys("0123456789", "i")}
_CHANGED = re.compile(r"Column\((/[^)]*)\) changed from \w+ to (string|number)")


def _event_leaves() -> dict[str, dict[str, tuple[Leaf, ...]]]:
    """Per known array, the paths each canonical column is read from, first found first."""
    found: dict[str, dict[str, tuple[Leaf, ...]]] = {}
    for array in _KNOWN:
        spec = ARRAYS[array]
        found[array] = {
            "event_id": EVENT_ID,
            "sender_id": spec.sender,
            "recipient_id": spec.recipient,
        }
    return found


_EVENTS = _event_leaves()
_PROTECTED: Leaf = ("user", "protected")
_SUBSCRIBER: Leaf = ("payload", "for_user_id")


@dataclass
class Reader:
    """The fast path for the webhook lines of one file: the line fields' names, and the JSON
    type of each whitelisted field, learnt from the reader's refusals (a log keeps a type);
    a line field or `for_user_id` found with both types is `mixed`: sniffed per line."""

    columns: ColumnMap
    types: dict[Leaf, pa.DataType] = field(default_factory=dict)
    mixed: list[Leaf] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.names = {c: self.columns.source(Input.DELIVERIES, c) for c in LINE_FIELDS}
        for name in self.names.values():
            self.types[(name,)] = pa.string()
        self.types[_SUBSCRIBER] = pa.string()
        for array, paths in _EVENTS.items():
            for chain in paths.values():
                for path in chain:
                    self.types[("payload", array, "[]", *path)] = pa.string()
            if ARRAYS[array].event_type is None:
                self.types[("payload", array, "[]", *_PROTECTED)] = pa.bool_()

    @property
    def usable(self) -> bool:
        """False when a mapped name could not be found by the fast path's patterns."""
        names = [*self.names.values(), "payload", "for_user_id"]
        return len(set(names)) == len(names) and all(_NAME.match(n) for n in names)

    def schema(self, signature: str) -> pa.Schema:
        """The whitelist as a schema, of the learnt types; the `mixed` fields of the
        sniffed types of a group of lines (`i` integer, else text)."""
        leaves = dict(self.types)
        for leaf, kind in zip(self.mixed, signature, strict=True):
            leaves[leaf] = pa.int64() if kind == "i" else pa.string()
        return pa.schema(list(_tree(leaves)))


def _tree(leaves: dict[Leaf, pa.DataType]) -> pa.DataType:
    """Leaf paths as nested structs; a `[]` step is a list."""
    children: dict[str, dict[Leaf, pa.DataType]] = {}
    for path, dtype in leaves.items():
        children.setdefault(path[0], {})[path[1:]] = dtype
    fields = []
    for name, below in children.items():
        dtype = below[()] if () in below else _tree(below)
        fields.append(pa.field(name, dtype))
    if [f.name for f in fields] == ["[]"]:
        return pa.list_(fields[0].type)
    return pa.struct(fields)


def _read(lines: list[bytes], schema: pa.Schema) -> pa.Table | None:
    """The lines through pyarrow's reader, or None when it refuses them or a line is not
    exactly one row. Its message is never shown: it may quote the line."""
    size = max(1 << 22, max(len(line) for line in lines) + 2)
    try:
        table = pj.read_json(
            io.BytesIO(b"\n".join(lines)),
            read_options=pj.ReadOptions(block_size=size),
            parse_options=pj.ParseOptions(
                explicit_schema=schema, unexpected_field_behavior="ignore"
            ),
        )
    except (pa.ArrowException, ValueError) as error:
        raise _Refused(str(error)) from None
    return table if table.num_rows == len(lines) else None


class _Refused(Exception):
    """pyarrow's reader refused a block."""


class _Regroup(Exception):
    """A line field holds both types in one block: the block is sniffed and read again."""


def _parse(reader: Reader, lines: list[bytes], signature: str) -> pa.Table | None:
    """The lines as a table; a field of the other type (string or integer) is learnt and
    the block read again, once per field and type."""
    tried: set[tuple[Leaf, str]] = set()
    while True:
        try:
            return _read(lines, reader.schema(signature))
        except _Refused as error:
            found = _CHANGED.search(str(error))
            leaf = tuple(found[1].split("/")[1:]) if found else ()
            if not found or reader.types.get(leaf, pa.bool_()) == pa.bool_():
                return None
            if leaf in reader.mixed:
                return None  # a sniff was wrong: the lines are halved
            if (leaf, found[2]) in tried:
                if len(leaf) > len(_SUBSCRIBER):
                    return None  # an event field of both types: the lines are halved
                reader.mixed.append(leaf)
                raise _Regroup from None
            tried.add((leaf, found[2]))
            reader.types[leaf] = pa.string() if found[2] == "string" else pa.int64()


def _pieces(
    reader: Reader, lines: list[bytes], numbers: list[int], signature: str
) -> Iterator[tuple[list[int], pa.Table | None]]:
    """Tables of the lines, halving what the reader refuses; None for lines it refuses."""
    table = _parse(reader, lines, signature)
    if table is not None or len(lines) <= _SMALLEST:
        yield numbers, table
        return
    half = len(lines) // 2
    yield from _pieces(reader, lines[:half], numbers[:half], signature)
    yield from _pieces(reader, lines[half:], numbers[half:], signature)


def _sniffed(reader: Reader, texts: list[str]) -> pl.DataFrame:
    """Per line, what the patterns see: too many brackets, escaped letters (a key could hide
    behind them), event-array keys, and the type of the first value of each `mixed` field,
    a guess the reader checks (`s` text, `i` integer, `n` other)."""
    text = pl.col("text")
    known = "|".join(re.escape(a) for a in _KNOWN)
    first = [
        text.str.extract(f'[{{,]\\s*"{leaf[-1]}{_VALUE}', 1)
        .str.slice(-1)
        .replace_strict(_KINDS, default="n")
        .fill_null("n")
        for leaf in reader.mixed
    ]
    return pl.DataFrame({"text": texts}, schema={"text": pl.String}).select(
        (
            (text.str.count_matches(r"[\[{]") <= _MAX_BRACKETS)
            & text.str.contains(r"\\u00[4-7][0-9a-fA-F]").not_()
        ).alias("ok"),
        (pl.concat_str(first) if first else pl.lit("")).alias("signature"),
        text.str.count_matches(r'_events"\s*:').alias("_all"),
        text.str.count_matches(f'[{{,]\\s*"(?:{known})"\\s*:').alias("_known"),
    )


def _at(expr: pl.Expr, path: Leaf) -> pl.Expr:
    for key in path:
        expr = expr.struct.field(key)
    return expr


def _chain(
    name: str, event: pl.Expr, chain: tuple[Leaf, ...], types: dict[Leaf, pa.DataType]
) -> list[pl.Expr]:
    """A column read from the first path of `chain` that holds a value, as `_typed` splits
    it: one column per JSON type (`NAME|String`, `NAME|Int64`), and `NAME|text`."""
    parts: dict[str, pl.Expr] = {}
    before: pl.Expr = pl.lit(True)
    for path in chain:
        value = _at(event, path)
        kind = "Int64" if types[path] == pa.int64() else "String"
        taken = pl.when(before).then(value)
        parts[kind] = pl.coalesce(parts[kind], taken) if kind in parts else taken
        before = before & value.is_null()
    text = pl.coalesce([p.cast(pl.String) for p in parts.values()])
    return [p.alias(f"{name}|{k}") for k, p in parts.items()] + [text.alias(f"{name}|text")]


def _events(reader: Reader, frame: pl.DataFrame, array: str, base: pl.Expr) -> pl.DataFrame:
    """The delivery rows of one array: one per event, numbered after the arrays before."""
    events = pl.col("payload").struct.field(array)
    exploded = (
        frame.filter(events.list.len() > 0)
        .with_columns(
            events.alias("_event"), pl.int_ranges(base, base + events.list.len()).alias(EVENT)
        )
        .explode("_event", EVENT)
    )
    event = pl.col("_event")
    types = {p[3:]: t for p, t in reader.types.items() if len(p) > 3 and p[1] == array}
    columns = [
        expr
        for name, chain in _EVENTS[array].items()
        if chain
        for expr in _chain(name, event, chain, types)
    ]
    spec = ARRAYS[array]
    if spec.event_type is None:
        protected = _at(event, _PROTECTED)
        kind = (
            pl.when(protected)
            .then(pl.lit(EventType.PROTECTED_TWEET.value))
            .otherwise(pl.lit("tweet"))
        )
        judged = pl.col("event_id|text").is_not_null() & protected.is_not_null()
    else:
        kind = pl.lit(spec.event_type)
        judged = pl.col("event_id|text").is_not_null()
    rows = exploded.with_columns(columns).with_columns(
        kind.alias("event_type|String"), kind.alias("event_type|text")
    )
    return rows.with_columns(judged.alias("_judged")).drop("_event", "payload")


def _table_rows(
    reader: Reader, table: pa.Table, sniffed: pl.DataFrame
) -> tuple[pl.DataFrame, list[int]]:
    """The delivery rows of the lines of a table the reader gave that the fast path can
    judge, and the numbers of the other lines (they go line by line)."""
    frame = pl.concat([pl.DataFrame(pl.from_arrow(table)), sniffed], how="horizontal")
    payload = pl.col("payload")
    arrays = [payload.struct.field(a) for a in _KNOWN]
    lengths = [a.list.len().fill_null(0) for a in arrays]
    present = pl.sum_horizontal(a.is_not_null().cast(pl.Int64) for a in arrays)
    null_event = pl.any_horizontal(
        a.list.eval(pl.element().is_null()).list.any().fill_null(False) for a in arrays
    )
    judged = (
        payload.is_not_null()
        & (present == pl.col("_known"))
        & (pl.col("_all") == pl.col("_known"))
        & (pl.sum_horizontal(lengths) > 0)
        & null_event.not_()
    )
    values = [*((c, pl.col(n)) for c, n in reader.names.items())]
    values.append(("for_user_id", payload.struct.field("for_user_id")))
    schema = frame.select(v.alias(c) for c, v in values).schema
    line = [
        expr
        for column, value in values
        for expr in (
            value.alias(f"{column}|{'Int64' if schema[column] == pl.Int64 else 'String'}"),
            value.cast(pl.String).alias(f"{column}|text"),
        )
    ]
    frame = frame.select(
        LINE,
        "payload",
        judged.alias("_line_judged"),
        *line,
        *(n.alias(f"_n{i}") for i, n in enumerate(lengths)),
    )
    parts = []
    for k, array in enumerate(_KNOWN):
        base = pl.sum_horizontal([pl.col(f"_n{i}") for i in range(k)]) if k else pl.lit(0)
        parts.append(_events(reader, frame, array, base.cast(pl.Int64)))
    rows = pl.concat(parts, how="diagonal_relaxed")
    unjudged = set(frame.filter(pl.col("_line_judged").not_())[LINE].to_list())
    unjudged.update(rows.filter(pl.col("_judged").not_())[LINE].to_list())
    rows = rows.filter(pl.col(LINE).is_in(sorted(unjudged)).not_())
    dropped = ["_judged", "_line_judged", *(f"_n{i}" for i in range(len(_KNOWN)))]
    return rows.drop(dropped), sorted(unjudged)


def block_frame(reader: Reader, lines: list[Line], counts: LineCounts) -> pl.DataFrame:
    """The `raw_frame` of a block of lines: column-wise where the fast path can judge a
    line, line by line (`records.json_rows`) where not, in line order."""
    counts.lines += len(lines)
    taken: list[Line] = []
    texts: list[str] = []
    slow: dict[int, Line] = {}
    for line in lines:
        data = line.data
        if line.too_long or not data.startswith(b"{") or not data.endswith(b"}"):
            slow[line.number] = line
            continue
        try:
            texts.append(data.decode("utf-8"))
        except UnicodeDecodeError:
            slow[line.number] = line
            continue
        taken.append(line)
    frames = _fast_frames(reader, taken, texts, slow) if taken else []
    if slow:
        by_line = LineCounts()
        rows = list(json_rows(slow.values(), Input.DELIVERIES, reader.columns, by_line))
        counts.blank += by_line.blank
        frames.append(raw_frame(rows, Input.DELIVERIES))
    frame = pl.concat(frames, how="diagonal_relaxed") if frames else raw_frame([], Input.DELIVERIES)
    missing = [f"{c}|text" for c in COLUMNS[Input.DELIVERIES] if f"{c}|text" not in frame.columns]
    if PROBLEM not in frame.columns:
        missing.append(PROBLEM)
    frame = frame.with_columns(pl.lit(None, dtype=pl.String).alias(m) for m in missing)
    return frame.sort(LINE, EVENT, nulls_last=False, maintain_order=True)


def _fast_frames(
    reader: Reader, taken: list[Line], texts: list[str], slow: dict[int, Line]
) -> list[pl.DataFrame]:
    """Rows of the lines the fast path judges; the others are added to `slow`."""
    while True:
        left: dict[int, Line] = {}
        try:
            frames = _grouped_frames(reader, taken, _sniffed(reader, texts), left)
        except _Regroup:
            continue  # a field found mixed is sniffed from now on
        slow.update(left)
        return frames


def _grouped_frames(
    reader: Reader, taken: list[Line], sniffed: pl.DataFrame, slow: dict[int, Line]
) -> list[pl.DataFrame]:
    """Rows of the lines, read in groups of the same sniffed types."""
    sniffed = sniffed.with_columns(pl.Series(LINE, [line.number for line in taken], dtype=pl.Int64))
    groups: dict[str, list[Line]] = {}
    for line, ok, signature in zip(taken, sniffed["ok"], sniffed["signature"], strict=True):
        if ok:
            groups.setdefault(signature, []).append(line)
        else:
            slow[line.number] = line
    counts = sniffed.select(LINE, "_all", "_known")
    frames: list[pl.DataFrame] = []
    for signature, group in groups.items():
        by_number = {line.number: line for line in group}
        data = [line.data for line in group]
        for piece, table in _pieces(reader, data, list(by_number), signature):
            unjudged = piece
            if table is not None:
                piece_counts = pl.DataFrame({LINE: piece}, schema={LINE: pl.Int64}).join(
                    counts, on=LINE, how="left", maintain_order="left"
                )
                rows, unjudged = _table_rows(reader, table, piece_counts)
                frames.append(rows)
            slow.update((n, by_number[n]) for n in unjudged)
    return frames
