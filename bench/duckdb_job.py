"""Benchmark job (b): run bench/duckdb_job.sql on a data set with DuckDB's default settings.

    python bench/duckdb_job.py DATA_DIR OUT_DIR

reads ``DATA_DIR/deliveries/`` (recursively), ``DATA_DIR/authorizations.parquet`` and
``DATA_DIR/apps.parquet`` and writes ``misdeliveries.parquet``, ``users.parquet``,
``developers.parquet`` and ``accounting.json`` into ``OUT_DIR`` (which must exist). The window
is DESIGN.md's default, ``[2017-05-01, 2018-09-11)`` UTC. Only ``duckdb`` is imported, so the
process's peak RSS is DuckDB's own.
"""

from __future__ import annotations

import sys
from pathlib import Path
from string import Template

import duckdb

SQL_FILE = Path(__file__).with_name("duckdb_job.sql")
SINCE = "2017-05-01 00:00:00+00"
UNTIL = "2018-09-11 00:00:00+00"


def literal(text: str) -> str:
    """`text` as a SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def job_sql(data: Path, out: Path) -> str:
    """The SQL script with its input paths, output files and window filled in."""
    return Template(SQL_FILE.read_text()).substitute(
        deliveries=literal(str(data / "deliveries" / "**" / "*.parquet")),
        authorizations=literal(str(data / "authorizations.parquet")),
        apps=literal(str(data / "apps.parquet")),
        since=f"TIMESTAMPTZ {literal(SINCE)}",
        until=f"TIMESTAMPTZ {literal(UNTIL)}",
        out_misdeliveries=literal(str(out / "misdeliveries.parquet")),
        out_users=literal(str(out / "users.parquet")),
        out_developers=literal(str(out / "developers.parquet")),
        out_accounting=literal(str(out / "accounting.json")),
    )


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python bench/duckdb_job.py DATA_DIR OUT_DIR", file=sys.stderr)
        return 2
    data, out = Path(argv[0]).resolve(), Path(argv[1]).resolve()
    con = duckdb.connect()  # in memory, default threads and memory limit
    try:
        con.execute(job_sql(data, out))
    finally:
        con.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
