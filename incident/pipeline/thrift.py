"""Thrift's compact protocol, as Parquet writes its footer and page headers, decoded by plan.

A struct is a run of (field id, type) headers and values, ended by a zero byte. Only the fields
a plan names are kept; the rest are skipped, with every length held against the bytes that
remain, and nesting held to a depth: damaged or hostile bytes are `ParquetDamage`, never a
crash or a hang.
"""

from __future__ import annotations

from typing import Any

_MAX_DEPTH = 64


class ParquetDamage(ValueError):
    """A file whose footer or page headers do not decode, or contradict each other."""


class Truncated(ParquetDamage):
    """Bytes that end inside a value: more may be read, where there are more."""


# What is kept of a struct: its fields of interest, each with how it is read (`INT`, `TEXT`,
# a struct's plan, or a list of one `[plan]`). Everything else is skipped, not built.
Plan = dict[int, Any]
INT, TEXT, BYTES = "int", "text", "bytes"


def _varint(data: bytes, at: int) -> tuple[int, int]:
    """An unsigned varint at `at`, and where the next value starts."""
    value = shift = 0
    while True:
        byte = data[at]  # an IndexError here is read as Truncated by the caller
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
        shift += 7
        if shift > 63:
            raise ParquetDamage("an integer of more than 64 bits")


def _collection(data: bytes, at: int) -> tuple[int, int, int]:
    """A list's size and element type, held against the bytes left, and where it starts."""
    header = data[at]
    size, at = (header >> 4, at + 1) if header >> 4 != 15 else _varint(data, at + 1)
    if size > len(data) - at:  # every element takes a byte at least
        raise Truncated("declares more elements than it has bytes")
    return size, header & 0x0F, at


def _skip(data: bytes, at: int, kind: int, depth: int) -> int:
    """Where the value of compact type `kind` at `at` ends."""
    if kind in (4, 5, 6):
        while data[at] & 0x80:
            at += 1
        return at + 1
    if kind == 8:
        size, at = _varint(data, at)
        return at + size
    if kind == 12:
        return _skip_struct(data, at, depth + 1)
    if kind in (1, 2):  # a boolean field carries its value in its type
        return at
    if kind == 3:
        return at + 1
    if kind == 7:
        return at + 8
    if depth > _MAX_DEPTH:
        raise ParquetDamage("values nested too deep")
    if kind in (9, 10):
        size, element, at = _collection(data, at)
        if element in (5, 6):  # integers (a column's encodings), skipped without a call each
            for _ in range(size):
                while data[at] & 0x80:
                    at += 1
                at += 1
            return at
        for _ in range(size):
            # In a collection, a boolean is a byte of its own.
            at = at + 1 if element in (1, 2) else _skip(data, at, element, depth + 1)
        return at
    if kind == 11:
        size, at = _varint(data, at)
        if 2 * size > len(data) - at:
            raise Truncated("declares more elements than it has bytes")
        if size:
            types = data[at]
            at += 1
            for _ in range(2 * size):
                element = types >> 4 if _ % 2 == 0 else types & 0x0F
                at = at + 1 if element in (1, 2) else _skip(data, at, element, depth + 1)
        return at
    raise ParquetDamage(f"a value of unknown type {kind}")


def _skip_struct(data: bytes, at: int, depth: int) -> int:
    """Where the struct at `at` ends, none of its fields kept (`_struct` without a plan)."""
    if depth > _MAX_DEPTH:
        raise ParquetDamage("values nested too deep")
    while True:
        header = data[at]
        at += 1
        if not header:
            return at
        kind = header & 0x0F
        if not header >> 4:  # a field id of its own
            at = _varint(data, at)[1]
        if kind in (5, 6):  # an integer, skipped without a call
            while data[at] & 0x80:
                at += 1
            at += 1
        elif kind == 8:
            size, at = _varint(data, at)
            at += size
        else:
            at = _skip(data, at, kind, depth)


def _read(data: bytes, at: int, kind: int, plan: Any, depth: int) -> tuple[Any, int]:
    """A value kept by its `plan`, and where it ends; a value of another type is damage."""
    if plan == INT and kind in (4, 5, 6):
        raw, at = _varint(data, at)
        return (raw >> 1) ^ -(raw & 1), at  # zigzag
    if plan in (TEXT, BYTES) and kind == 8:
        size, at = _varint(data, at)
        value = bytes(data[at : at + size])
        return value.decode("utf-8", "replace") if plan == TEXT else value, at + size
    if isinstance(plan, dict) and kind == 12:
        return _struct(data, at, plan, depth + 1)
    if isinstance(plan, list) and kind in (9, 10):
        size, element, at = _collection(data, at)
        values = []
        for _ in range(size):
            value, at = _read(data, at, element, plan[0], depth + 1)
            values.append(value)
        return values, at
    raise ParquetDamage(f"a value of type {kind} where another is expected")


def _struct(data: bytes, at: int, plan: Plan, depth: int = 0) -> tuple[dict[int, Any], int]:
    """The fields of the struct at `at` named in `plan`, and where the struct ends."""
    if depth > _MAX_DEPTH:
        raise ParquetDamage("values nested too deep")
    found: dict[int, Any] = {}
    field = 0
    while True:
        header = data[at]
        at += 1
        if not header:
            return found, at
        kind = header & 0x0F
        if header >> 4:
            field += header >> 4
        else:
            raw, at = _varint(data, at)
            field = (raw >> 1) ^ -(raw & 1)
        wanted = plan.get(field)
        if kind in (5, 6) and wanted in (None, INT):
            # Integers, most of what a footer or page header holds, are read here: no call
            # for a one-byte value, none to skip one.
            byte = data[at]
            if byte < 0x80:
                raw, at = byte, at + 1
            elif wanted is None:
                while data[at] & 0x80:
                    at += 1
                at += 1
                continue
            else:
                raw, at = _varint(data, at)
            if wanted is not None:
                found[field] = (raw >> 1) ^ -(raw & 1)  # zigzag
        elif wanted is None:
            at = _skip(data, at, kind, depth)
        else:
            found[field], at = _read(data, at, kind, wanted, depth)


def decode(data: bytes, plan: Plan) -> tuple[dict[int, Any], int]:
    """A whole struct from `data`; `Truncated` when `data` ends inside it."""
    try:
        found, end = _struct(data, 0, plan)
    except IndexError:
        raise Truncated("ends inside a value") from None
    if end > len(data):
        raise Truncated("ends inside a value")
    return found, end
