"""The compact-protocol decoder behind the integrity check: what a plan keeps, what it skips,
and hostile bytes refused as damage (never a RecursionError, an IndexError or a hang)."""

from __future__ import annotations

import pytest

from incident.pipeline.thrift import BYTES, INT, ParquetDamage, Truncated, decode

# {1: i32 5, 2: struct {1: i64 7, 2: binary "ab"}, 3: list<i32> [1, 2, 3], 4: i32 -2}
STRUCT = (
    b"\x15\x0a"  # field 1, i32, zigzag 5
    b"\x1c\x16\x0e\x18\x02ab\x00"  # field 2, a struct of an i64 and a binary
    b"\x19\x35\x02\x04\x06"  # field 3, a list of three i32
    b"\x15\x03\x00"  # field 4, i32, zigzag -2; the end
)


@pytest.mark.parametrize(
    ("plan", "kept"),
    [
        ({1: INT, 4: INT}, {1: 5, 4: -2}),  # the struct and the list skipped
        ({2: {2: BYTES}, 3: [INT]}, {2: {2: b"ab"}, 3: [1, 2, 3]}),
        ({2: {}}, {2: {}}),
        ({}, {}),
    ],
)
def test_a_plan_keeps_its_fields_and_skips_the_rest(plan: dict[int, object], kept: object) -> None:
    assert decode(STRUCT, plan) == (kept, len(STRUCT))


def test_a_value_of_another_type_than_planned_is_damage() -> None:
    with pytest.raises(ParquetDamage, match="type 12 where another"):
        decode(STRUCT, {2: INT})


@pytest.mark.parametrize("plan", [{}, {2: INT}, {1: {}}])
def test_structs_nested_beyond_a_depth_are_damage(plan: dict[int, object]) -> None:
    nested = b"\x1c" * 200 + b"\x00" * 201  # field 1, a struct, 200 deep
    with pytest.raises(ParquetDamage, match="nested too deep"):
        decode(nested, plan)


@pytest.mark.parametrize("end", range(1, len(STRUCT)))
@pytest.mark.parametrize("plan", [{}, {1: INT, 2: {2: BYTES}, 3: [INT]}])
def test_bytes_that_end_inside_a_value_are_truncated(end: int, plan: dict[int, object]) -> None:
    with pytest.raises(Truncated):
        decode(STRUCT[:end], plan)


def test_an_integer_of_more_than_64_bits_is_damage() -> None:
    with pytest.raises(ParquetDamage, match="more than 64 bits"):
        decode(bytes([0x15, *[0xFF] * 10, 0x01, 0x00]), {1: INT})
