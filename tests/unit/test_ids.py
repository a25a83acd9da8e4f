"""Ids: prefixed ULIDs in Crockford base32, sorted by creation, validated by prefix."""

from __future__ import annotations

import random

import pytest

from shared.core import ids
from shared.core.ids import is_valid_id, new_id


def test_ids_are_prefixed_and_sorted_by_creation() -> None:
    ids = [new_id("evt") for _ in range(2000)]
    assert all(i.startswith("evt_") and len(i) == 30 for i in ids)
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert all(is_valid_id(i, "evt") for i in ids[:50])


def _reference_encoding(value: int) -> str:
    """ULID text by the definition: 26 groups of 5 bits, most significant first."""
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    return "".join(alphabet[(value >> (5 * (25 - i))) & 31] for i in range(26))


def test_id_encoding_is_crockford_base32_of_the_128_bits() -> None:
    rng = random.Random(7)
    edges = [0, 1, 31, 32, (1 << 128) - 1, 1 << 127, 1 << 80, 0x0123456789ABCDEF0123456789ABCDEF]
    for value in edges + [rng.getrandbits(128) for _ in range(1000)]:
        assert ids._encode(value) == _reference_encoding(value), hex(value)


def test_id_validation_refuses_wrong_prefix_length_and_alphabet() -> None:
    good = new_id("dlv")
    assert is_valid_id(good, "dlv")
    assert not is_valid_id(good, "evt")
    assert not is_valid_id(good[:-1], "dlv")
    assert not is_valid_id(good[:-1] + "U", "dlv")  # U is not Crockford base32
    assert not is_valid_id("dlv_" + "Z" * 26, "dlv")  # timestamp overflow
    with pytest.raises(ValueError):
        new_id("nope")
