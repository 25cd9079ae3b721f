"""Writing the canonical Parquet parts, batch by batch, so that memory follows a batch.

Deliveries go under hive partitions by the UTC day of `delivered_at`
(`day=YYYY-MM-DD/part-00000.parquet`); a file stays open while its day keeps coming, and at
most `MAX_OPEN` are open at once (logs come roughly in time order; a day that comes back
after its file was closed gets a new part). Authorizations and apps go to one file,
`part-00000.parquet`, a row group per batch. The quarantine is `_rejected.parquet`, and the
manifest `_manifest.json`: names starting with `_` are markers that `scan` does not read as
data, so the output directory is itself an input `scan` reads.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from incident.pipeline.values import DTYPES
from incident.schema import COLUMNS, Input

REJECTED = "_rejected.parquet"
MANIFEST = "_manifest.json"
PART = "part-{:05d}.parquet"
MAX_OPEN = 16
_COMPRESSION = "zstd"
_ARROW = {pl.String(): pa.string(), pl.Int64(): pa.int64()}


def arrow_schema(columns: dict[str, pl.DataType]) -> pa.Schema:
    """The Parquet schema of a frame of these polars types: text as `string`, times as
    `timestamp[ns, UTC]`, integers as `int64`; the same in every part."""

    def arrow(dtype: pl.DataType) -> pa.DataType:
        if isinstance(dtype, pl.Datetime):
            return pa.timestamp("ns", tz="UTC")
        return _ARROW[dtype]

    return pa.schema([(name, arrow(dtype)) for name, dtype in columns.items()])


def canonical_schema(input_: Input) -> pa.Schema:
    """The Parquet schema of an input's canonical columns."""
    return arrow_schema({n: DTYPES[c.kind] for n, c in COLUMNS[input_].items()})


class _Part:
    """One Parquet file being written, and its rows."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.rows = 0
        self._schema = schema
        self._writer = pq.ParquetWriter(path, schema, compression=_COMPRESSION)

    def write(self, frame: pl.DataFrame) -> None:
        self._writer.write_table(frame.to_arrow().cast(self._schema))
        self.rows += frame.height

    def close(self) -> None:
        self._writer.close()


class PartWriter:
    """The data files of one input under `root`, written batch by batch; `written` maps
    each closed file's path (relative to `root`) to its rows."""

    def __init__(self, root: Path, input_: Input) -> None:
        self.root = root
        self.schema = canonical_schema(input_)
        self.by_day = input_ is Input.DELIVERIES
        self.written: dict[str, int] = {}
        self._open: OrderedDict[str, _Part] = OrderedDict()
        self._parts: dict[str, int] = {}

    def write(self, valid: pl.DataFrame) -> None:
        """Append a batch of canonical rows."""
        if valid.is_empty():
            return
        if not self.by_day:
            self._part("").write(valid)
            return
        days = valid["delivered_at"].dt.strftime("%Y-%m-%d")
        for (day,), rows in valid.with_columns(_day=days).group_by("_day", maintain_order=True):
            self._part(f"day={day}").write(rows.drop("_day"))

    def _part(self, directory: str) -> _Part:
        if directory in self._open:
            self._open.move_to_end(directory)
            return self._open[directory]
        if len(self._open) >= MAX_OPEN:
            self._close(next(iter(self._open)))
        number = self._parts.get(directory, 0)
        self._parts[directory] = number + 1
        part = _Part(self.root / directory / PART.format(number), self.schema)
        self._open[directory] = part
        return part

    def _close(self, directory: str) -> None:
        part = self._open.pop(directory)
        part.close()
        self.written[part.path.relative_to(self.root).as_posix()] = part.rows

    def close(self) -> dict[str, int]:
        """Close every open file; the files written, with their rows, in name order."""
        for directory in list(self._open):
            self._close(directory)
        return dict(sorted(self.written.items()))


class Quarantine:
    """`_rejected.parquet`: every rejected row, with its file, line, event and reason."""

    def __init__(self, root: Path, columns: dict[str, pl.DataType]) -> None:
        self.path = root / REJECTED
        self._part = _Part(self.path, arrow_schema(columns))

    def write(self, rejected: pl.DataFrame) -> None:
        """Append rejected rows."""
        if not rejected.is_empty():
            self._part.write(rejected)

    def close(self) -> int:
        """Close the file; the rows it holds."""
        self._part.close()
        return self._part.rows
