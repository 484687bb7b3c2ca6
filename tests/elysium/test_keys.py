"""WireGuard keys: base64 of exactly 32 bytes; X25519 pairs; files 0600."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from elysium.errors import ValidationError
from elysium.keys import (
    generate_private_key,
    hex_to_key,
    key_to_hex,
    load_or_create_private_key,
    normalize_key,
    parse_key,
    public_key,
)


@given(st.binary(min_size=32, max_size=32))
def test_any_32_bytes_round_trip_through_base64_and_hex(raw: bytes) -> None:
    text = base64.b64encode(raw).decode()
    assert parse_key(text) == raw
    assert hex_to_key(key_to_hex(text)) == text


@given(st.binary(max_size=64).filter(lambda b: len(b) != 32))
def test_other_lengths_are_refused_naming_the_field(raw: bytes) -> None:
    with pytest.raises(ValidationError) as err:
        parse_key(base64.b64encode(raw).decode(), "public_key")
    assert "public_key" in err.value.fields


@given(st.text(max_size=60))
def test_arbitrary_text_is_either_a_valid_key_or_a_validation_error(text: str) -> None:
    try:
        raw = parse_key(text)
    except ValidationError:
        return
    assert len(raw) == 32 and base64.b64encode(raw).decode() == text


def test_non_canonical_base64_is_refused() -> None:
    good = base64.b64encode(bytes(range(32))).decode()
    bad = good[:-2] + "B="  # same length, non-zero padding bits
    with pytest.raises(ValidationError):
        parse_key(bad)
    with pytest.raises(ValidationError):
        normalize_key(None)


def test_public_key_matches_wireguard_known_answer() -> None:
    # RFC 7748 §6.1 test vector (Alice).
    priv = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
    pub = bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
    assert public_key(base64.b64encode(priv).decode()) == base64.b64encode(pub).decode()


def test_generated_private_keys_are_clamped_and_distinct() -> None:
    keys = {generate_private_key() for _ in range(50)}
    assert len(keys) == 50
    for k in keys:
        raw = parse_key(k)
        assert raw[0] & 7 == 0 and raw[31] & 128 == 0 and raw[31] & 64


def test_key_file_is_created_0600_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "hub" / "wg0.key"
    key = load_or_create_private_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_private_key(path) == key
