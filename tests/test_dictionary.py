"""The dictionary pages the integrity check reads for blank text (`pipeline/dictionary`): a
proof only where every value is a dictionary entry and no entry is blank; a damaged, hostile
or large dictionary proves nothing, and the check is made on every row."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from incident import ColumnMap, ScanConfig, scan
from incident.errors import InputError
from incident.pipeline.dictionary import (
    MAX_BYTES,
    MAX_ENTRIES,
    SNAPPY,
    UNCOMPRESSED,
    WHITE_SPACE,
    ZSTD,
    _stream_size,
    no_blank_entry,
)
from incident.pipeline.footers import with_dictionary_proofs
from incident.pipeline.integrity import NO_BLANKS, check_parquet
from incident.pipeline.load import load_input
from incident.pipeline.values import is_blank
from incident.schema import Input
from tests.conftest import delivery, grant, write

TEXT = frozenset({"event_type"})


def _written(path: Path, types: Sequence[str | None], **options: object) -> Path:
    """Deliveries with these event types, without statistics (only a dictionary can tell)."""
    rows = [delivery(event_id=i, event_type=t) for i, t in enumerate(types)]
    pq.write_table(pl.DataFrame(rows).to_arrow(), path, write_statistics=False, **options)
    return path


def _proven(path: Path, names: frozenset[str] = TEXT) -> bool:
    return NO_BLANKS in check_parquet(str(path), names).proofs["event_type"]


def _first_pass_checks(path: Path) -> set[str]:
    (group,) = load_input(Input.DELIVERIES, str(path), ColumnMap()).groups
    return {text for _, text in group.problems} - group.needless


def test_white_space_is_every_character_polars_strips() -> None:
    characters = [chr(c) for c in range(0x110000) if not 0xD800 <= c < 0xE000]
    blank = pl.DataFrame({"c": characters}).filter(is_blank(pl.col("c")))["c"].to_list()
    assert sorted(blank) == sorted(WHITE_SPACE)


@pytest.mark.parametrize("compression", ["none", "snappy", "zstd"])
def test_a_dictionary_without_a_blank_entry_proves_the_check_needless(
    tmp_path: Path, compression: str
) -> None:
    path = _written(
        tmp_path / "d.parquet", ["tweet", " follow", "dm\u3000"] * 5, compression=compression
    )
    assert _proven(path)
    # In the integrity check already: the first pass opens no file again to know it.
    assert "event_type: empty" not in _first_pass_checks(path)


@pytest.mark.parametrize("compression", ["gzip", "brotli", "lz4"])
def test_a_codec_whose_stream_does_not_say_its_size_is_left_to_the_first_pass(
    tmp_path: Path, compression: str
) -> None:
    path = _written(tmp_path / "d.parquet", ["tweet", "follow"] * 5, compression=compression)
    assert not _proven(path)
    (group,) = load_input(Input.DELIVERIES, str(path), ColumnMap()).groups
    assert "event_type: empty" in with_dictionary_proofs(group).needless


@pytest.mark.parametrize("blank", ["", " ", "\u3000\t", "\x85"])
def test_a_blank_entry_proves_nothing(tmp_path: Path, blank: str) -> None:
    path = _written(tmp_path / "d.parquet", ["tweet", blank, "follow"])
    assert not _proven(path)
    assert "event_type: empty" in _first_pass_checks(path)


def test_only_the_columns_named_are_read(tmp_path: Path) -> None:
    path = _written(tmp_path / "d.parquet", ["tweet", "follow"])
    assert not _proven(path, frozenset())
    assert _proven(path)


def test_values_written_plain_after_the_dictionary_are_not_vouched_for(tmp_path: Path) -> None:
    # The dictionary's entries are not blank, but the pages after it hold the values as such.
    types = [f"type-{i:04d}" for i in range(2_000)]
    path = _written(tmp_path / "d.parquet", types, dictionary_pagesize_limit=64, data_page_size=64)
    assert not _proven(path)


def test_a_large_dictionary_is_left_to_the_first_pass(tmp_path: Path) -> None:
    path = _written(tmp_path / "d.parquet", [f"type-{i}" for i in range(MAX_ENTRIES + 1)])
    assert not _proven(path)
    (group,) = load_input(Input.DELIVERIES, str(path), ColumnMap()).groups
    assert "event_type: empty" not in group.needless
    assert "event_type: empty" in with_dictionary_proofs(group).needless


def _plain(*entries: bytes) -> bytes:
    return b"".join(len(e).to_bytes(4, "little") + e for e in entries)


PLAIN = 0


def _never() -> bytes:
    raise AssertionError("a dictionary read that should not be")


@pytest.mark.parametrize(
    ("entries", "size", "page"),
    [
        (2, len(_plain(b"a", b"b")), _plain(b"a", b"b")),  # the one that proves
        (3, len(_plain(b"a", b"b")), _plain(b"a", b"b")),  # more entries than it holds
        (1, len(_plain(b"a", b"b")), _plain(b"a", b"b")),  # bytes after its entries
        (2, len(_plain(b"a", b"\xff")), _plain(b"a", b"\xff")),  # not UTF-8
        (1, 7, (5_000).to_bytes(4, "little") + b"abc"),  # an entry longer than the page
    ],
)
def test_only_a_dictionary_that_decodes_exactly_proves(
    entries: int, size: int, page: bytes
) -> None:
    proves = page == _plain(b"a", b"b") and entries == 2
    assert no_blank_entry(UNCOMPRESSED, PLAIN, entries, size, size, lambda: page) is proves


def test_a_hostile_dictionary_header_is_not_followed() -> None:
    page = pa.Codec("zstd").compress(_plain(b"a", b"b"), asbytes=True)
    size = len(_plain(b"a", b"b"))
    assert no_blank_entry(ZSTD, PLAIN, 2, size, len(page), lambda: page)
    # Sizes beyond what is read here, or an entry count: the page is not even read.
    assert not no_blank_entry(ZSTD, PLAIN, 2, 2**40, len(page), _never)
    assert not no_blank_entry(ZSTD, PLAIN, 2, size, MAX_BYTES + 1, _never)
    assert not no_blank_entry(ZSTD, PLAIN, 2**31, size, len(page), _never)
    assert not no_blank_entry(ZSTD, PLAIN, -1, size, len(page), _never)
    # A size that is not the page's, bytes that are not zstd, a codec not known here.
    assert not no_blank_entry(ZSTD, PLAIN, 2, size + 1, len(page), lambda: page)
    assert not no_blank_entry(ZSTD, PLAIN, 2, size, len(page), lambda: b"\xff" * len(page))
    assert not no_blank_entry(3, PLAIN, 2, size, len(page), lambda: page)  # LZO


def _damaged_dictionary(path: Path) -> Path:
    """Deliveries whose `event_type` dictionary page (zstd) ends in bytes that are not zstd."""
    path = _written(path, ["tweet", "follow"] * 50, compression="zstd")
    chunk = pq.read_metadata(path).row_group(0).column(4)
    assert chunk.path_in_schema == "event_type" and chunk.has_dictionary_page
    data = bytearray(path.read_bytes())
    end = chunk.data_page_offset
    data[end - 4 : end] = b"\xff" * 4
    path.write_bytes(bytes(data))
    return path


def test_a_dictionary_that_does_not_decompress_proves_nothing_and_is_named(
    tmp_path: Path,
) -> None:
    path = _damaged_dictionary(tmp_path / "deliveries.parquet")
    assert not _proven(path)
    grants = write([grant()], tmp_path / "grants.parquet")
    with pytest.raises(InputError, match=r"deliveries\.parquet: column 'event_type'"):
        scan(ScanConfig(str(path), str(grants), out=tmp_path / "out"))


def test_a_stream_shorter_than_its_page_proves_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    # pyarrow returns a buffer of the size asked for, whatever the stream held: its tail may
    # be an earlier page's entries. Only a stream that says it holds the page's size is read.
    whole, short = _plain(b"a", b"b"), _plain(b"a")

    class Stale:
        def __init__(self, name: str) -> None:
            pass

        def decompress(self, page: bytes, size: int, asbytes: bool) -> bytes:
            return whole[:size]

    monkeypatch.setattr(pa, "Codec", Stale)
    for codec in (SNAPPY, ZSTD):
        for held, proves in ((short, False), (whole, True)):
            page = _compress(codec, held)
            assert _stream_size(codec, page) == len(held)
            read = functools.partial(bytes, page)
            assert no_blank_entry(codec, PLAIN, 2, len(whole), len(page), read) is proves


_REAL_CODEC = pa.Codec


def _compress(codec: int, data: bytes) -> bytes:
    return bytes(_REAL_CODEC({SNAPPY: "snappy", ZSTD: "zstd"}[codec]).compress(data, asbytes=True))


def test_a_zstd_frame_that_does_not_say_its_size_proves_nothing() -> None:
    page = _compress(ZSTD, _plain(b"a", b"b"))
    assert _stream_size(ZSTD, page) == len(_plain(b"a", b"b"))
    # The same magic with a descriptor that holds no content size (not a single segment).
    assert _stream_size(ZSTD, page[:4] + b"\x00\x00" + page[6:]) is None
    assert _stream_size(ZSTD, b"\x00" * len(page)) is None  # not a zstd frame
    assert _stream_size(SNAPPY, b"\xff" * 6) is None  # a varint that never ends


def _zigzag(n: int) -> bytes:
    n, out = (n << 1) ^ (n >> 63), bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    return bytes(out) + bytes([n])


def test_a_dictionary_page_after_the_data_pages_is_refused(tmp_path: Path) -> None:
    # pyarrow reads such a chunk from its data pages, polars from its dictionary: two answers.
    path = _written(tmp_path / "deliveries.parquet", ["tweet", "follow"] * 50, compression="none")
    chunk = pq.read_metadata(path).row_group(0).column(4)
    data = path.read_bytes()
    size = int.from_bytes(data[-8:-4], "little")
    footer = data[-8 - size : -8]
    # ColumnMetaData's data_page_offset (field 9) then dictionary_page_offset (field 11).
    offsets = b"\x26" + _zigzag(chunk.data_page_offset) + b"\x26"
    old = offsets + _zigzag(chunk.dictionary_page_offset)
    assert footer.count(old) == 1
    footer = footer.replace(old, offsets + _zigzag(chunk.data_page_offset + 1))
    path.write_bytes(data[: -8 - size] + footer + len(footer).to_bytes(4, "little") + b"PAR1")
    grants = write([grant()], tmp_path / "grants.parquet")
    with pytest.raises(InputError, match=r"deliveries\.parquet.*a dictionary page at \d+, after"):
        scan(ScanConfig(str(path), str(grants), out=tmp_path / "out"))
