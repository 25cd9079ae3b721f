"""Reproducible benchmark of `incident scan` (issue 3).

    python bench/run.py --deliveries 20000000 [--shape sample|many-grants] [--rounds 3]
        [--data DIR] [--keep]
    python bench/run.py --memory-curve 20000000,50000000,100000000 [--data ROOT] [--keep]
    python bench/run.py --memory-curve 20000000,50000000,100000000 --fixed-grants [--base B]
        [--data ROOT] [--keep]

The first form makes sure ``DIR`` holds the data set ``incident sample --deliveries N --seed 1``
(generated unless ``DIR/.bench-N`` says it is already there) or, with ``--shape many-grants``,
``python bench/many_grants.py DIR --deliveries N --seed 1`` (a large platform's grants: N / 10
users, 5,000 apps, 0.16 N grants, two large files; marker ``DIR/.bench-many-grants-N``), then
times three jobs on it,
interleaved (a b c a b c ...), each in its own child process so that the operating system
reports the peak RSS of that run alone (``os.wait4``):

(a) the floor, a bare polars streaming scan of the five required delivery columns
    (bench/floor.py);
(b) the same job as `incident scan`, written by hand in DuckDB SQL (bench/duckdb_job.sql, run
    by bench/duckdb_job.py with DuckDB's default settings);
(c) ``python -m incident scan DIR --out OUT -q``.

It prints the median and every round's wall time, the median peak RSS, the ratios the issue
sets targets for (c/a <= 1.5, b/c >= 1.5, c_rss/b_rss <= 1.0), then checks that (b) and (c)
give the same reports (users, developers, misdeliveries and the row accounting) and exits 1
when they do not. Last, it runs bench/stages.py once on the same data and prints where (c)
spends its time and memory, stage by stage (skip it with ``--no-stages``).

The second form runs only (c), once per size, and prints its peak RSS per size. The generator
writes at most 40 M deliveries, so a larger data set is made of parts generated with seeds 1,
2, ... (``--part-size`` deliveries at most each), whose user, app and developer ids are shifted
per part so that the parts are disjoint populations: the same statistical shape as one big
sample, with grants that match their deliveries.

The third form is the second with the grants held fixed, so that only the deliveries grow:
every size reads the authorizations.parquet and apps.parquet of one base sample
(``incident sample --deliveries B --seed 1``, B = ``--base``, default 20 M, in ROOT/fixed/base-B,
reused like the first form's data sets) and copies of its deliveries. Copy j (j = 0, 1, ...)
has each event id replaced by its dense rank over the whole base times 1024 plus j, and each
delivery id prefixed with ``r<j>-`` for j > 0: distinct deliveries of distinct events, with
the same users, apps, times and evidence, so every copy matches the same grants. Size N takes
N // B whole copies and, for the rest, a partial copy made of the first rows of each base file
(its share of the rest), specific to N. Each copy is written once, under
ROOT/fixed/copies/copy-j (copy-j-for-N for a partial one), and reused while its ``.copy`` marker
says it is complete; ROOT/fixed/N holds only symbolic links to the copies' files and to the
base's grants and apps. The table adds, per size, the grants and the misdeliveries that the
scan's summary.json reports; a scan that did not read exactly N rows is an error.

MB are 10^6 bytes. Progress goes to stderr; the figures go to stdout.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

# The working tree's incident, as the child processes use (PYTHONPATH below).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# Rewritten parts are laid out as the generator writes them.
from incident.sample import DELIVERY_WRITE_OPTIONS, MAX_DELIVERIES, TABLE_WRITE_OPTIONS

BENCH = Path(__file__).resolve().parent
PROJECT = BENCH.parent
SEED = 1
GENERATOR_CAP = MAX_DELIVERIES
DEFAULT_PART_SIZE = 25_000_000  # below the cap: generating 40 M at once needs ~14 GB
DEFAULT_ROOT = Path(tempfile.gettempdir()) / "incident-bench"
DEFAULT_BASE = 20_000_000  # deliveries of the base sample of --fixed-grants

# Targets of issue 3, as (label, ratio, comparison, bound).
TARGETS = (
    ("c/a", "wall time of incident / bare scan", "<=", 1.5),
    ("b/c", "wall time of DuckDB / incident", ">=", 1.5),
    ("c_rss/b_rss", "peak RSS of incident / DuckDB", "<=", 1.0),
)

# Shifts applied to the ids of part k of a multi-part data set (k = 0 keeps its ids). The
# generator's user ids stay below 1e9 + 1000 * (N / 20) < 1e10 and its app ids below
# 1e5 + 100 * (N / 20000) < 1e6 for N <= 40 M, so the parts cannot collide.
USER_ID_SHIFT = 10_000_000_000
APP_ID_SHIFT = 1_000_000
USER_COLUMNS = ("for_user_id", "sender_id", "recipient_id")


class BenchError(Exception):
    """A failure of the benchmark itself (bad data directory, a job that crashed, ...)."""


def log(message: str) -> None:
    """Progress, on stderr."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def mb(kib: int) -> float:
    """`ru_maxrss` (KiB on Linux) in MB."""
    return kib * 1024 / 1e6


# --------------------------------------------------------------------------- child processes


def child_env() -> dict[str, str]:
    """The environment of every child: this checkout of `incident` comes first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT), env.get("PYTHONPATH")]))
    return env


@dataclass(frozen=True)
class Measurement:
    """Wall time and peak resident set size of one child process."""

    seconds: float
    peak_rss_mb: float


def run_child(argv: Sequence[str | Path], logs: Path, name: str) -> Measurement:
    """Run `argv` to completion; its stdout and stderr go to `logs`.stdout / `logs`.stderr.

    The child is reaped with `os.wait4`, whose resource usage is that child's (and its own
    waited-for children's) alone, so `ru_maxrss` is the peak RSS of this run.
    """
    stdout, stderr = logs.with_suffix(".stdout"), logs.with_suffix(".stderr")
    with stdout.open("wb") as out, stderr.open("wb") as err:
        start = time.perf_counter()
        process = subprocess.Popen([str(a) for a in argv], stdout=out, stderr=err, env=child_env())
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
    process.returncode = code = os.waitstatus_to_exitcode(status)
    if code != 0:
        tail = "\n".join(stderr.read_text(errors="replace").splitlines()[-15:])
        raise BenchError(f"{name} exited with {code}: {' '.join(map(str, argv))}\n{tail}")
    return Measurement(seconds, mb(usage.ru_maxrss))


# --------------------------------------------------------------------------- data sets


SHAPES = ("sample", "many-grants")


def marker(data: Path, deliveries: int, shape: str = "sample") -> Path:
    """The file that says `data` holds the benchmark's data set of `deliveries` rows, of
    `shape` (`incident sample`'s, or bench/many_grants.py's)."""
    return data / (f".bench-{deliveries}" if shape == "sample" else f".bench-{shape}-{deliveries}")


def ensure_data(
    data: Path, deliveries: int, part_size: int, logs: Path, shape: str = "sample"
) -> bool:
    """Make `data` hold the data set of `deliveries` rows; True when this call generated it.

    A directory with the marker is reused as it is. A directory holding another size of this
    benchmark's data set is replaced; any other non-empty directory is left alone (an error).
    """
    if marker(data, deliveries, shape).exists():
        log(f"reusing the data set in {data} ({deliveries:,} deliveries)")
        return False
    if data.exists() and any(data.iterdir()):
        if not any(data.glob(".bench-*")):
            raise BenchError(
                f"{data}: not empty and not a data set of this benchmark; "
                f"give an empty or new --data, or create {marker(data, deliveries, shape).name} "
                f"in it if it holds the {shape} data set of {deliveries} deliveries, seed {SEED}"
            )
        log(f"{data} holds a data set of another size: replacing it")
        shutil.rmtree(data)
    parts = math.ceil(deliveries / part_size)
    started = time.perf_counter()
    try:
        if shape == "many-grants":
            generate_many_grants(data, deliveries, logs)
        elif parts == 1:
            generate(data, deliveries, SEED, logs)
        else:
            generate_in_parts(data, deliveries, parts, logs)
    except BaseException:
        shutil.rmtree(data, ignore_errors=True)  # empty or missing before: only our files
        raise
    log(f"generated {deliveries:,} deliveries in {time.perf_counter() - started:.1f} s")
    description = {"deliveries": deliveries, "seed": SEED, "parts": parts, "shape": shape}
    marker(data, deliveries, shape).write_text(json.dumps(description) + "\n")
    return True


def generate(out: Path, deliveries: int, seed: int, logs: Path) -> None:
    """`incident sample --out OUT --deliveries N --seed SEED`, in a child process."""
    log(f"generating {deliveries:,} deliveries (seed {seed}) into {out}")
    argv = [sys.executable, "-m", "incident", "sample", "--out", out]
    argv += ["--deliveries", str(deliveries), "--seed", str(seed)]
    run_child(argv, logs / f"sample-{deliveries}-{seed}", "incident sample")


def generate_many_grants(out: Path, deliveries: int, logs: Path) -> None:
    """`python bench/many_grants.py OUT --deliveries N --seed SEED`, in a child process."""
    log(f"generating {deliveries:,} deliveries over many grants (seed {SEED}) into {out}")
    argv = [sys.executable, BENCH / "many_grants.py", out, "--deliveries", str(deliveries)]
    run_child([*argv, "--seed", str(SEED)], logs / f"many-grants-{deliveries}", "many_grants")


def generate_in_parts(data: Path, deliveries: int, parts: int, logs: Path) -> None:
    """A data set of `deliveries` rows made of `parts` samples with seeds 1, 2, ...

    Part k's deliveries go to `deliveries/day=D/part-k.parquet`; its user and app ids are
    shifted by k * USER_ID_SHIFT and k * APP_ID_SHIFT, its developer and delivery ids get a
    `p<k>-` prefix, in every input, so grants still match their deliveries and no two parts
    share a user, app or developer. No truth.parquet is written.
    """
    sizes = [deliveries // parts + (k < deliveries % parts) for k in range(parts)]
    staging = data / ".parts"
    authorizations: list[pa.Table] = []
    apps: list[pa.Table] = []
    for k, size in enumerate(sizes):
        part = staging / f"part-{k}"
        generate(part, size, SEED + k, logs)
        log(f"merging part {k + 1}/{parts} into {data}")
        for source in sorted((part / "deliveries").glob("day=*/*.parquet")):
            target = data / "deliveries" / source.parent.name / f"part-{k}.parquet"
            target.parent.mkdir(parents=True, exist_ok=True)
            if k == 0:
                source.replace(target)
            else:
                table = shift_ids(pq.read_table(source), k)
                pq.write_table(table, target, **DELIVERY_WRITE_OPTIONS)
        authorizations.append(shift_ids(pq.read_table(part / "authorizations.parquet"), k))
        apps.append(shift_ids(pq.read_table(part / "apps.parquet"), k))
        shutil.rmtree(part)
    pq.write_table(
        pa.concat_tables(authorizations), data / "authorizations.parquet", **TABLE_WRITE_OPTIONS
    )
    pq.write_table(pa.concat_tables(apps), data / "apps.parquet", **TABLE_WRITE_OPTIONS)
    shutil.rmtree(staging)


def shift_ids(table: pa.Table, part: int) -> pa.Table:
    """`table` (deliveries, authorizations or apps) with the ids of part `part` made unique."""
    if part == 0:
        return table
    prefix = f"p{part}-"
    for index, name in enumerate(table.column_names):
        column = table.column(name)
        if name in USER_COLUMNS:
            column = pc.add(column, pa.scalar(part * USER_ID_SHIFT, pa.int64()))
        elif name == "app_id":
            column = pc.add(column, pa.scalar(part * APP_ID_SHIFT, pa.int64()))
        elif name in ("developer_id", "delivery_id"):
            column = pc.binary_join_element_wise(prefix, column, "")
        else:
            continue
        table = table.set_column(index, name, column)
    return table


def warm_page_cache(data: Path) -> None:
    """Read every file of `data` once, so that the first timed job does not pay for the disk."""
    for path in sorted(data.rglob("*.parquet")):
        with path.open("rb") as file:
            while file.read(1 << 24):
                pass


# --------------------------------------------------------------------------- the jobs


@dataclass(frozen=True)
class Job:
    """One benchmarked job: a label, a name, and how to run it against a data set."""

    label: str
    name: str
    argv: Callable[[Path, Path], list[str | Path]]  # (data, out) -> argv
    creates_out: bool = True  # False: the job needs its output directory to exist
    times: list[Measurement] = field(default_factory=list)

    def out(self, work: Path) -> Path:
        return work / f"out-{self.label}"

    def run(self, data: Path, work: Path, round_: int) -> Measurement:
        """Run once into a fresh output directory and record the measurement."""
        out = self.out(work)
        shutil.rmtree(out, ignore_errors=True)
        if not self.creates_out:
            out.mkdir()
        measurement = run_child(self.argv(data, out), work / f"{self.label}-{round_}", self.name)
        self.times.append(measurement)
        return measurement

    @property
    def median_seconds(self) -> float:
        return statistics.median(m.seconds for m in self.times)

    @property
    def median_rss_mb(self) -> float:
        return statistics.median(m.peak_rss_mb for m in self.times)


def make_jobs() -> list[Job]:
    """(a) the bare scan, (b) the DuckDB job, (c) incident scan, in the order they run."""
    python = sys.executable
    return [
        Job("a", "bare polars scan", lambda data, _out: [python, BENCH / "floor.py", data]),
        Job(
            "b",
            "DuckDB SQL",
            lambda data, out: [python, BENCH / "duckdb_job.py", data, out],
            creates_out=False,  # COPY ... TO writes files into an existing directory
        ),
        Job(
            "c",
            "incident scan",
            lambda data, out: [python, "-m", "incident", "scan", data, "--out", out, "-q"],
        ),
    ]


def run_rounds(jobs: list[Job], data: Path, work: Path, rounds: int) -> None:
    """Run the jobs interleaved, a b c a b c ..., `rounds` times."""
    for round_ in range(1, rounds + 1):
        for job in jobs:
            m = job.run(data, work, round_)
            log(
                f"round {round_}/{rounds} ({job.label}) {job.name}: "
                f"{m.seconds:.2f} s, {m.peak_rss_mb:,.0f} MB"
            )


def print_figures(jobs: list[Job], deliveries: int) -> None:
    """The table of medians, rounds and peak RSS, then the ratios against their targets."""
    by_label = {job.label: job for job in jobs}
    print(f"\n{deliveries:,} deliveries, {len(jobs[0].times)} rounds, {os.cpu_count()} CPUs")
    print(f"{'job':<24}{'median s':>10}  {'rounds (s)':<26}{'median peak RSS':>16}")
    for job in jobs:
        rounds = " ".join(f"{m.seconds:.2f}" for m in job.times)
        print(
            f"({job.label}) {job.name:<20}{job.median_seconds:>10.2f}  {rounds:<26}"
            f"{job.median_rss_mb:>13,.0f} MB"
        )
    a, b, c = by_label["a"], by_label["b"], by_label["c"]
    values = {
        "c/a": c.median_seconds / a.median_seconds,
        "b/c": b.median_seconds / c.median_seconds,
        "c_rss/b_rss": c.median_rss_mb / b.median_rss_mb,
    }
    print()
    for label, meaning, comparison, bound in TARGETS:
        value = values[label]
        met = value <= bound if comparison == "<=" else value >= bound
        verdict = "met" if met else "NOT met"
        print(f"{label:<12}{value:>6.2f}  target {comparison} {bound}: {verdict:<8} ({meaning})")


# --------------------------------------------------------------------------- equal reports


@dataclass(frozen=True)
class ReportSpec:
    """How to bring one report of (b) and (c) to a comparable form."""

    name: str
    key: str
    ids: tuple[str, ...] = ()  # compared as text
    lists: tuple[str, ...] = ()  # lists of text, compared sorted
    times: tuple[str, ...] = ()  # compared as UTC nanoseconds
    counts: tuple[str, ...] = ()  # compared as Int64
    text: tuple[str, ...] = ()  # compared as they are

    @property
    def columns(self) -> tuple[str, ...]:
        return self.ids + self.lists + self.times + self.counts + self.text


REPORTS = (
    ReportSpec(
        "users",
        key="user_id",
        ids=("user_id",),
        lists=("roles", "developer_ids"),
        times=("first_exposed_at", "last_exposed_at"),
        counts=("events", "direct_messages", "protected_tweets", "developers"),
    ),
    ReportSpec(
        "developers",
        key="developer_id",
        ids=("developer_id",),
        lists=("app_ids",),
        times=("first_received_at", "last_received_at"),
        counts=("events", "deliveries", "direct_messages", "protected_tweets", "users_exposed"),
    ),
    ReportSpec(
        "misdeliveries",
        key="delivery_id",
        ids=("delivery_id", "event_id", "app_id", "for_user_id", "sender_id", "recipient_id"),
        times=("delivered_at",),
        counts=("http_status",),
        text=("event_type", "webhook_url", "resolved_ip", "backend_host", "developer_id", "reason"),
    ),
)
MAX_SHOWN = 10  # differing rows shown per report


def comparable(frame: pl.DataFrame, spec: ReportSpec) -> pl.DataFrame:
    """`frame` with only the spec's columns, in one type each, sorted by the key."""
    missing = [c for c in spec.columns if c not in frame.columns]
    if missing:
        raise BenchError(f"{spec.name}: missing columns {missing}")
    return frame.select(
        *(pl.col(c).cast(pl.String) for c in spec.ids),
        *(pl.col(c).list.eval(pl.element().cast(pl.String)).list.sort() for c in spec.lists),
        *(pl.col(c).dt.convert_time_zone("UTC").dt.cast_time_unit("ns") for c in spec.times),
        *(pl.col(c).cast(pl.Int64) for c in spec.counts),
        *(pl.col(c).cast(pl.String) for c in spec.text),
    ).sort(spec.key)


def show(value: object) -> str:
    """A cell of a differing row, compactly: timestamps in ISO-8601, text quoted."""
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return repr(value)


def report_differences(duck: pl.DataFrame, inc: pl.DataFrame, spec: ReportSpec) -> list[str]:
    """How the DuckDB report differs from incident's, row by row ([] when they are equal)."""
    if duck.equals(inc):
        return []
    lines = [f"{spec.name}: DuckDB has {duck.height:,} rows, incident {inc.height:,}"]
    for side, frame in (("DuckDB", duck), ("incident", inc)):
        if frame[spec.key].is_duplicated().any():
            lines.append(f"  {side}'s {spec.key} is not unique")
    for side, this, other in (("DuckDB", duck, inc), ("incident", inc, duck)):
        only = this.join(other, on=spec.key, how="anti", nulls_equal=True)
        if only.height:
            lines.append(f"  {only.height:,} {spec.key}s only in {side}'s report, e.g.:")
            lines += [
                "    " + ", ".join(f"{c}={show(v)}" for c, v in row.items())
                for row in only.head(MAX_SHOWN).iter_rows(named=True)
            ]
    both = duck.join(inc, on=spec.key, suffix=":incident", nulls_equal=True)
    others = [c for c in spec.columns if c != spec.key]
    differs = pl.any_horizontal(pl.col(c).ne_missing(pl.col(f"{c}:incident")) for c in others)
    changed = both.filter(differs)
    if changed.height:
        lines.append(f"  {changed.height:,} rows differ, e.g. (DuckDB -> incident):")
        for row in changed.head(MAX_SHOWN).iter_rows(named=True):
            cells = [
                f"{c}: {show(row[c])} -> {show(row[c + ':incident'])}"
                for c in others
                if row[c] != row[c + ":incident"]
            ]
            lines.append(f"    {spec.key}={row[spec.key]}: " + "; ".join(cells))
    return lines


ACCOUNTING = (
    "rows_read", "rows_rejected", "rows_outside_window", "rows_authorized", "rows_misdelivered",
)  # fmt: skip


def accounting_differences(duck_out: Path, inc_out: Path, floor_rows: int | None) -> list[str]:
    """The row accounting of DuckDB vs incident's summary.json, and the bare scan's row count."""
    duck = json.loads((duck_out / "accounting.json").read_text())
    inc = json.loads((inc_out / "summary.json").read_text())["accounting"]
    lines = [
        f"accounting: {key}: DuckDB {duck.get(key)}, incident {inc.get(key)}"
        for key in ACCOUNTING
        if duck.get(key) != inc.get(key)
    ]
    if floor_rows is not None and floor_rows != inc.get("rows_read"):
        lines.append(
            f"accounting: the bare scan read {floor_rows} rows, incident {inc['rows_read']}"
        )
    return lines


def compare_outputs(work: Path, jobs: list[Job]) -> list[str]:
    """Every difference between the last reports of (b) and (c); [] when identical."""
    by_label = {job.label: job for job in jobs}
    duck_out, inc_out = by_label["b"].out(work), by_label["c"].out(work)
    floor_stdout = work / f"a-{len(by_label['a'].times)}.stdout"
    floor_rows = json.loads(floor_stdout.read_text())["rows"] if floor_stdout.exists() else None
    lines = accounting_differences(duck_out, inc_out, floor_rows)
    for spec in REPORTS:
        duck = comparable(pl.read_parquet(duck_out / f"{spec.name}.parquet"), spec)
        inc = comparable(pl.read_parquet(inc_out / f"{spec.name}.parquet"), spec)
        lines += report_differences(duck, inc, spec)
    return lines


# --------------------------------------------------------------------------- fixed grants

MAX_COPIES = 1024  # copy j's event ids are FIRST_ID + (dense rank) * MAX_COPIES + j
# Every id has as many digits, so that the ids' text sorts as their numbers and the base's
# order, which is the events' time order (snowflake ids), as a real platform's ids do.
FIRST_ID = 10**15


@dataclass(frozen=True)
class Base:
    """The base sample of the fixed-grants curve: its delivery files and their row counts."""

    data: Path
    files: tuple[Path, ...]
    rows: tuple[int, ...]
    event_ids: npt.NDArray[np.int64]  # the distinct event ids of all its deliveries, sorted

    @property
    def deliveries(self) -> int:
        return sum(self.rows)


def load_base(data: Path) -> Base:
    """The base's delivery files, their row counts, and its distinct event ids (one query)."""
    files = tuple(sorted((data / "deliveries").glob("day=*/*.parquet")))
    if not files:
        raise BenchError(f"{data}: no deliveries/day=*/*.parquet")
    rows = tuple(pq.read_metadata(file).num_rows for file in files)
    events = pl.scan_parquet(list(files)).select("event_id")
    dtype = events.collect_schema()["event_id"]
    if dtype != pl.Int64:
        raise BenchError(f"{data}: event_id is {dtype}, expected Int64")
    ids = events.unique().sort("event_id").collect()["event_id"]
    if ids.null_count():
        raise BenchError(f"{data}: event_id has nulls")
    return Base(data, files, rows, ids.to_numpy())


def copy_marker(copy: Path) -> Path:
    """The file that says `copy` is complete."""
    return copy / ".copy"


def ensure_copy(base: Base, copy: Path, j: int, rows: int) -> bool:
    """Make `copy` hold copy `j` of the base's deliveries, `rows` of them (all, or a first
    share of each file); True when this call wrote it, False when a complete one was reused.

    Copy j is the base with every event id replaced by FIRST_ID plus its dense rank over the
    whole base (1, 2, ..., in the ids' order) times MAX_COPIES plus j, and, for j > 0, every
    delivery id
    prefixed with `r<j>-`: distinct deliveries of distinct events, with the same users, apps,
    times and evidence, so every copy matches the same grants.
    """
    ids = f"{FIRST_ID} + rank * {MAX_COPIES} + j"
    description = json.dumps({"base": str(base.data), "copy": j, "rows": rows, "ids": ids}) + "\n"
    if copy_marker(copy).exists() and copy_marker(copy).read_text() == description:
        return False
    shutil.rmtree(copy, ignore_errors=True)
    # A partial copy takes from each file its share of `rows`, rounded so they add up exactly.
    before = np.cumsum((0, *base.rows))
    shares = np.diff(rows * before // base.deliveries)
    for source, share in zip(base.files, shares, strict=True):
        table = pq.read_table(source).slice(0, int(share))
        ranks = np.searchsorted(base.event_ids, table.column("event_id").to_numpy()) + 1
        event_ids = pa.array(FIRST_ID + ranks * MAX_COPIES + j, pa.int64())
        table = table.set_column(table.schema.get_field_index("event_id"), "event_id", event_ids)
        if j > 0:
            delivery_ids = pc.binary_join_element_wise(f"r{j}-", table.column("delivery_id"), "")
            index = table.schema.get_field_index("delivery_id")
            table = table.set_column(index, "delivery_id", delivery_ids)
        target = copy / source.parent.name / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, target, **DELIVERY_WRITE_OPTIONS)
    copy_marker(copy).write_text(description)
    return True


def copies_of(deliveries: int, base_rows: int, copies: Path) -> list[tuple[Path, int, int]]:
    """(directory, j, rows) of the copies a data set of `deliveries` rows is made of: full
    copies 0, 1, ..., shared by every size, then a partial copy specific to this size."""
    full, rest = divmod(deliveries, base_rows)
    if full + (rest > 0) > MAX_COPIES:
        raise BenchError(f"{deliveries:,} deliveries need more than {MAX_COPIES} copies")
    plan = [(copies / f"copy-{j}", j, base_rows) for j in range(full)]
    if rest:
        plan.append((copies / f"copy-{full}-for-{deliveries}", full, rest))
    return plan


def link_data_set(data: Path, base: Base, copies: Sequence[Path]) -> None:
    """Make `data` a data set of symbolic links: deliveries/day=D/<copy>-<file> to the copies'
    files, authorizations.parquet and apps.parquet to the base's."""
    shutil.rmtree(data, ignore_errors=True)  # links only: rmtree does not follow them
    for copy in copies:
        for file in sorted(copy.glob("day=*/*.parquet")):
            link = data / "deliveries" / file.parent.name / f"{copy.name}-{file.name}"
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(file)
    for name in ("authorizations.parquet", "apps.parquet"):
        (data / name).symlink_to(base.data / name)


def disk_mb(directory: Path) -> float:
    """The size of the Parquet files under `directory`, in MB."""
    return sum(file.stat().st_size for file in directory.rglob("*.parquet")) / 1e6


def scan_size(
    job: Job, data: Path, work: Path, index: int, deliveries: int
) -> tuple[Measurement, int, int]:
    """Run (c) once on `data`; its measurement, and the grants and misdeliveries its
    summary.json reports (read before the next run replaces it)."""
    warm_page_cache(data)
    m = job.run(data, work, index)
    summary = json.loads((job.out(work) / "summary.json").read_text())
    rows_read = summary["accounting"]["rows_read"]
    if rows_read != deliveries:
        raise BenchError(f"{data}: incident scan read {rows_read:,} rows, not {deliveries:,}")
    grants = summary["inputs"]["authorizations"]["rows"]
    misdeliveries = summary["accounting"]["rows_misdelivered"]
    log(
        f"{deliveries:,} deliveries: {m.seconds:.2f} s, {m.peak_rss_mb:,.0f} MB, "
        f"{misdeliveries:,} misdeliveries"
    )
    return m, grants, misdeliveries


def fixed_grants_curve(args: argparse.Namespace, work: Path) -> int:
    """(c) once per size, every size with the same grants and apps; its wall time and peak
    RSS, with the grants and misdeliveries its summary.json reports."""
    root = (args.data or DEFAULT_ROOT).resolve() / "fixed"
    job = make_jobs()[2]
    made: list[Path] = []  # what this run wrote, removed at the end unless --keep
    written: list[tuple[float, float]] = []  # (seconds, MB) per copy written by this run
    rows: list[tuple[int, Measurement]] = []
    found: list[tuple[int, int]] = []  # (grants, misdeliveries) per size
    try:
        base_dir = root / f"base-{args.base}"
        if ensure_data(base_dir, args.base, args.part_size, work):
            made.append(base_dir)
        base = load_base(base_dir)
        for deliveries in args.memory_curve:
            plan = copies_of(deliveries, base.deliveries, root / "copies")
            for copy, j, copy_rows in plan:
                started = time.perf_counter()
                if ensure_copy(base, copy, j, copy_rows):
                    made.append(copy)
                    written.append((time.perf_counter() - started, disk_mb(copy)))
                    log(
                        f"wrote {copy} ({copy_rows:,} deliveries): {written[-1][0]:.1f} s, "
                        f"{written[-1][1]:,.0f} MB"
                    )
                else:
                    log(f"reusing {copy}")
            data = root / str(deliveries)
            link_data_set(data, base, [copy for copy, _, _ in plan])
            made.append(data)
            m, grants, misdeliveries = scan_size(job, data, work, len(rows) + 1, deliveries)
            rows.append((deliveries, m))
            found.append((grants, misdeliveries))
    finally:
        if not args.keep:
            for path in reversed(made):
                shutil.rmtree(path, ignore_errors=True)
    print_curve(rows, found)
    print(f"\nevery size: the grants and apps of {base_dir}, copies of its deliveries")
    if written:
        seconds, sizes_mb = zip(*written, strict=True)
        print(
            f"copies written by this run: {len(written)}, {sum(seconds):.1f} s in all, "
            f"{sum(sizes_mb):,.0f} MB on disk ({sizes_mb[0]:,.0f} MB for the first)"
        )
    return 0


# --------------------------------------------------------------------------- modes


def benchmark(args: argparse.Namespace, work: Path) -> int:
    """Interleaved rounds of (a), (b), (c); figures; the equal-reports check."""
    name = str(args.deliveries) if args.shape == "sample" else f"{args.shape}-{args.deliveries}"
    data = (args.data or DEFAULT_ROOT / name).resolve()
    generated = ensure_data(data, args.deliveries, args.part_size, work, args.shape)
    try:
        log("warming the page cache")
        warm_page_cache(data)
        jobs = make_jobs()
        run_rounds(jobs, data, work, args.rounds)
        print_figures(jobs, args.deliveries)
        differences = compare_outputs(work, jobs)
        if args.stages:
            log("per stage: bench/stages.py, once")
            run_child([sys.executable, BENCH / "stages.py", data], work / "stages", "stages")
            print("\n(c) per stage, one more run:\n" + (work / "stages.stdout").read_text())
    finally:
        if generated and not args.keep:
            log(f"removing the generated data set {data} (keep it with --keep)")
            shutil.rmtree(data)
    print()
    if not differences:
        print("reports identical: yes (users, developers, misdeliveries, row accounting)")
        return 0
    print("reports identical: NO")
    print("\n".join(differences))
    return 1


def memory_curve(args: argparse.Namespace, work: Path) -> int:
    """(c) once per size; its wall time and peak RSS, relative to the first size."""
    if args.fixed_grants:
        return fixed_grants_curve(args, work)
    root = (args.data or DEFAULT_ROOT).resolve()
    job = make_jobs()[2]
    rows: list[tuple[int, Measurement]] = []
    found: list[tuple[int, int]] = []  # (grants, misdeliveries) per size
    for deliveries in args.memory_curve:
        data = root / str(deliveries)
        generated = ensure_data(data, deliveries, args.part_size, work)
        try:
            m, grants, misdeliveries = scan_size(job, data, work, len(rows) + 1, deliveries)
        finally:
            if generated and not args.keep:
                shutil.rmtree(data)
        rows.append((deliveries, m))
        found.append((grants, misdeliveries))
    print_curve(rows, found)
    return 0


def print_curve(rows: list[tuple[int, Measurement]], found: list[tuple[int, int]]) -> None:
    """The curve: wall time and peak RSS per size, relative to the first size, with the
    grants and misdeliveries of each size."""
    base = rows[0][1].peak_rss_mb
    print(
        f"\n{'deliveries':>14}{'wall s':>10}{'peak RSS':>14}{'x first':>9}"
        f"{'grants':>12}{'misdeliveries':>15}"
    )
    for (deliveries, m), (grants, misdeliveries) in zip(rows, found, strict=True):
        print(
            f"{deliveries:>14,}{m.seconds:>10.2f}{m.peak_rss_mb:>11,.0f} MB"
            f"{m.peak_rss_mb / base:>9.2f}{grants:>12,}{misdeliveries:>15,}"
        )


def sizes(text: str) -> list[int]:
    """'20000000,50000000' -> [20000000, 50000000]."""
    try:
        values = [int(part.replace("_", "")) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers: {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("sizes must be positive")
    return values


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python bench/run.py",
        description="Benchmark incident scan against a bare polars scan and hand-written DuckDB.",
    )
    parser.add_argument("--deliveries", type=int, default=20_000_000, help="data set size")
    parser.add_argument(
        "--shape",
        choices=SHAPES,
        default="sample",
        help="the data: `incident sample --seed 1` (default), or bench/many_grants.py's "
        "(N / 10 users, 5,000 apps, 0.16 N grants with random intervals, two large files)",
    )
    parser.add_argument(
        "--no-stages",
        dest="stages",
        action="store_false",
        help="do not run bench/stages.py once after the rounds",
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument(
        "--data",
        type=Path,
        help="the data set's directory, reused when it holds DIR/.bench-N "
        f"(default {DEFAULT_ROOT}/N); with --memory-curve, the root holding one per size",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the data sets this run generated and the reports (default: delete them)",
    )
    parser.add_argument(
        "--memory-curve",
        type=sizes,
        metavar="N,N,...",
        help="only run incident scan once per size and print its peak RSS",
    )
    parser.add_argument(
        "--part-size",
        type=int,
        default=DEFAULT_PART_SIZE,
        help="larger data sets are generated in parts of at most this many deliveries "
        f"(default {DEFAULT_PART_SIZE:,}; the generator's cap is {GENERATOR_CAP:,})",
    )
    parser.add_argument(
        "--fixed-grants",
        action="store_true",
        help="with --memory-curve: every size has the grants and apps of one base sample, "
        "and its deliveries are copies of the base's",
    )
    parser.add_argument(
        "--base",
        type=int,
        default=DEFAULT_BASE,
        help=f"with --fixed-grants: the base sample's deliveries (default {DEFAULT_BASE:,})",
    )
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.deliveries < 1:
        parser.error("--rounds and --deliveries must be positive")
    if not 1 <= args.part_size <= GENERATOR_CAP:
        parser.error(f"--part-size must be between 1 and {GENERATOR_CAP:,}")
    if args.shape != "sample" and args.memory_curve:
        parser.error("--shape works with the first form only")
    if args.fixed_grants and not args.memory_curve:
        parser.error("--fixed-grants needs --memory-curve")
    if args.base < 1:
        parser.error("--base must be positive")
    return args


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="incident-bench-work-"))
    try:
        if args.memory_curve:
            return memory_curve(args, work)
        return benchmark(args, work)
    except BenchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        if args.keep:
            log(f"reports and logs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
