"""After the fault tests (this file runs last in tests/faults): no private key they made shows
up in a database row, a log, or an API answer, and every key file is 0600.

The keys are the ones in :class:`~tests.faults.conftest.SecretLedger`: each peer's WireGuard
key (made "client side"), each hub interface key read from its state dir, the PKI keys. Each
stack dumped its database and scanned its state dir when it stopped; the rest is scanned here.
"""

from __future__ import annotations

import base64

import pytest

from tests.faults.conftest import SecretLedger


def test_no_private_key_leaked_into_the_database_logs_or_answers(
    secret_ledger: SecretLedger,
) -> None:
    ledger = secret_ledger
    if ledger.databases_scanned == 0:
        pytest.skip("no fault test ran in this session: nothing to scan")
    sample = next(iter(ledger.keys))
    pem_line = next(iter(ledger.pem_lines))
    # The scanner sees a key in each form it could leak in.
    assert ledger.leaks(f'{{"k": "{sample}"}}')
    assert ledger.leaks(f"private_key={base64.b64decode(sample).hex()}\n")
    assert ledger.leaks(f"\\\\x{base64.b64decode(sample).hex()}\t")
    assert ledger.leaks(f"...{pem_line}...")

    for log in sorted(ledger.logs):
        if log.exists():
            ledger.scan(str(log), log.read_text(errors="replace"))
    for i, answer in enumerate(ledger.answers):
        ledger.scan(f"API answer {i}", answer)

    assert ledger.findings == []
    assert {str(p): oct(m) for p, m in ledger.key_modes.items() if m != 0o600} == {}
    hub_keys = [p for p in ledger.key_modes if p.parent.name == "keys"]
    assert hub_keys, "no hub interface key was checked"
    print(
        f"\nsecrets: {len(ledger.keys)} WireGuard keys + {len(ledger.pem_lines)} PEM lines;"
        f" {ledger.databases_scanned} database dumps, {len(ledger.logs)} logs,"
        f" {len(ledger.answers)} API answers scanned; {len(ledger.key_modes)} key files 0600"
    )
