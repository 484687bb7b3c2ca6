"""A peer's certificate is checked once per API process (a follower asks again after every
answer with the same one), and still refused once it runs out or under another CA."""

from __future__ import annotations

import datetime as dt

from cryptography.hazmat.primitives.serialization import Encoding

from api.auth import certificate_peer
from elysium import pki


def test_a_checked_certificate_names_its_peer_until_it_runs_out() -> None:
    ca, ca_key = pki.create_ca()
    cert = pki.sign_csr(ca, ca_key, pki.make_csr(pki.new_private_key()), 7, 1)
    der = cert.public_bytes(Encoding.DER)

    assert certificate_peer(ca, der) == (7, pki.serial_hex(cert))
    assert certificate_peer(ca, der) == (7, pki.serial_hex(cert))  # kept, same answer
    after = cert.not_valid_after_utc + dt.timedelta(seconds=1)
    assert certificate_peer(ca, der, after) is None
    before = cert.not_valid_before_utc - dt.timedelta(seconds=1)
    assert certificate_peer(ca, der, before) is None


def test_a_certificate_of_another_ca_names_no_peer() -> None:
    ca, _ = pki.create_ca()
    other, other_key = pki.create_ca("Other CA")
    cert = pki.sign_csr(other, other_key, pki.make_csr(pki.new_private_key()), 7, 1)

    assert certificate_peer(ca, cert.public_bytes(Encoding.DER)) is None
    assert certificate_peer(other, cert.public_bytes(Encoding.DER)) is not None
