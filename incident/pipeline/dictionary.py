"""A column chunk's dictionary page read for blank text, as the integrity check walks its pages.

When every data page of a chunk is dictionary-encoded, every value of the chunk is an entry of
its dictionary page: no blank entry, no blank value, and rule 1's blank check of that column
is needless there. The page is decompressed with its codec and its entries (PLAIN: a 4-byte
length, then the bytes) tested here; a small dictionary (`MAX_ENTRIES`, `MAX_BYTES`) only,
so that a large or hostile one costs nothing (pyarrow reads those later, `footers`). Anything
that does not decode proves nothing: the check is then made on every row, and the reader that
makes it names what is wrong.

A page is decompressed here only when its stream says, before it is decompressed, that it
holds exactly the page's size: pyarrow's `Codec.decompress` returns a buffer of the size asked
for whatever the stream held, and polars reads the bytes a short stream lacks as zeros
(empty entries). Snappy streams begin with their length; zstd frames as pyarrow writes them
carry it. Other codecs are left to pyarrow's reading of the dictionaries, which checks it.
"""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa

# Every character polars' `strip_chars` strips: Unicode White_Space (tests/test_dictionary.py
# checks it against polars for every character).
WHITE_SPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
# The first bytes of their UTF-8: a text that is not empty and starts with another byte is
# not blank.
BLANK_FIRST_BYTES = frozenset(character.encode()[0] for character in WHITE_SPACE)

# A dictionary read here at most: event types, statuses, hosts; a larger one is left to pyarrow.
MAX_ENTRIES = 1024
MAX_BYTES = 2**20
# Parquet's codecs by number, as pyarrow names them (LZO and Hadoop's LZ4 framing: none).
UNCOMPRESSED, SNAPPY, ZSTD = 0, 1, 6
_CODECS = {SNAPPY: "snappy", ZSTD: "zstd"}
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_PLAIN, _PLAIN_DICTIONARY, _RLE_DICTIONARY = 0, 2, 8
# How a data page points into the dictionary (PLAIN_DICTIONARY in format 1, RLE_DICTIONARY).
DICTIONARY_ENCODINGS = frozenset({_PLAIN_DICTIONARY, _RLE_DICTIONARY})
# What pyarrow raises on bytes that do not decompress.
_DECOMPRESS_ERRORS = (pa.ArrowException, OSError, ValueError)


def no_blank_entry(
    codec: int, encoding: int, entries: int, size: int, compressed: int, read: Callable[[], bytes]
) -> bool:
    """True when the dictionary page that `read` returns (`compressed` bytes, with `codec`;
    `size` bytes uncompressed, `entries` of text written with `encoding`) decodes, and no
    entry is blank or other than UTF-8; False for anything else, and for a dictionary larger
    than is read here (then not read)."""
    if encoding not in (_PLAIN, _PLAIN_DICTIONARY) or not 0 < entries <= MAX_ENTRIES:
        return False
    if not (0 <= size <= MAX_BYTES and 0 <= compressed <= MAX_BYTES):
        return False
    if codec != UNCOMPRESSED and codec not in _CODECS:
        return False
    page = read()
    if _stream_size(codec, page) != size:
        return False
    if codec == UNCOMPRESSED:
        data = page
    else:
        try:
            data = pa.Codec(_CODECS[codec]).decompress(page, size, asbytes=True)
        except _DECOMPRESS_ERRORS:
            return False
    return len(data) == size and _no_blank(data, entries)


def _stream_size(codec: int, page: bytes) -> int | None:
    """The bytes that `page` decompresses to, as its stream says before it is decompressed
    (the codec then fails unless it holds exactly that many); None when it does not say."""
    if codec == UNCOMPRESSED:
        return len(page)
    if codec == SNAPPY:  # a varint of the uncompressed length, then the stream
        size = 0
        for at, byte in enumerate(page[:5]):
            size |= (byte & 0x7F) << (7 * at)
            if byte < 0x80:
                return size
        return None
    # zstd: a frame whose header holds its content size (a single frame fills the buffer).
    if len(page) < 6 or page[:4] != _ZSTD_MAGIC:
        return None
    descriptor = page[4]
    single_segment, flag = descriptor >> 5 & 1, descriptor >> 6
    width = (single_segment, 2, 4, 8)[flag]
    if width == 0 or descriptor & 0x08:  # no content size, or a reserved bit set
        return None
    at = 5 + (1 - single_segment) + (0, 1, 2, 4)[descriptor & 3]
    if len(page) < at + width:
        return None
    return int.from_bytes(page[at : at + width], "little") + (256 if width == 2 else 0)


def _no_blank(data: bytes, entries: int) -> bool:
    """True when `data` is `entries` PLAIN byte arrays, none blank and each UTF-8."""
    at = 0
    for _ in range(entries):
        length = int.from_bytes(data[at : at + 4], "little")
        at += 4
        if at + length > len(data):
            return False
        try:
            text = data[at : at + length].decode()
        except UnicodeDecodeError:
            return False
        if not text.strip(WHITE_SPACE):
            return False
        at += length
    return at == len(data)
