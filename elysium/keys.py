"""WireGuard keys: parse and check base64 of exactly 32 bytes, make X25519 pairs."""

from __future__ import annotations

import base64
import binascii
import secrets
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from elysium.errors import ValidationError
from elysium.files import write_atomic

KEY_LEN = 32


def parse_key(text: object, field: str = "public_key") -> bytes:
    """Return the 32 raw bytes of a standard-base64 WireGuard key, or raise ValidationError."""
    if not isinstance(text, str):
        raise ValidationError(field, "must be a base64 string")
    if len(text) != 44 or not text.endswith("="):
        raise ValidationError(field, "must be 44 characters of standard base64 (32 bytes)")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValidationError(field, "is not valid base64") from None
    if len(raw) != KEY_LEN or base64.b64encode(raw).decode() != text:
        raise ValidationError(field, "must encode exactly 32 bytes")
    return raw


def normalize_key(text: object, field: str = "public_key") -> str:
    """Validate a key and return its canonical base64 text."""
    return encode_key(parse_key(text, field))


def encode_key(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def key_to_hex(text: str) -> str:
    """Base64 key to the lowercase hex the UAPI protocol speaks."""
    return parse_key(text).hex()


def hex_to_key(hex_text: str) -> str:
    return encode_key(bytes.fromhex(hex_text))


def generate_private_key() -> str:
    """A new clamped Curve25519 private key in base64."""
    raw = bytearray(secrets.token_bytes(KEY_LEN))
    raw[0] &= 248
    raw[31] = (raw[31] & 127) | 64
    return encode_key(bytes(raw))


def public_key(private_b64: str) -> str:
    """The public key of a base64 private key."""
    priv = X25519PrivateKey.from_private_bytes(parse_key(private_b64, "private_key"))
    pub: X25519PublicKey = priv.public_key()
    return encode_key(pub.public_bytes(Encoding.Raw, PublicFormat.Raw))


def load_or_create_private_key(path: Path) -> str:
    """Read a private key file, making one (mode 0600) the first time."""
    if path.exists():
        return normalize_key(path.read_text().strip(), "private_key")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = generate_private_key()
    write_atomic(path, key + "\n", 0o600)
    return key
