"""The private CA: server and client certificates, peer certificates from CSRs, files, CLI."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cli.main import cli
from elysium import pki
from elysium.errors import ValidationError


@pytest.fixture(scope="module")
def ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    return pki.create_ca()


def _eku(cert: x509.Certificate) -> list[x509.ObjectIdentifier]:
    return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _der_element(data: bytes, at: int) -> tuple[bytes, int]:
    """One TLV of DER starting at ``at``: the whole element and the offset after it."""
    first = data[at + 1]
    if first < 0x80:
        header, length = 2, first
    else:
        count = first & 0x7F
        header, length = 2 + count, int.from_bytes(data[at + 2 : at + 2 + count], "big")
    end = at + header + length
    return data[at:end], end


def _csr_with_key_signed_by_another(
    holder: ec.EllipticCurvePrivateKey, signer: ec.EllipticCurvePrivateKey
) -> bytes:
    """A CSR carrying ``holder``'s public key whose signature was made by ``signer``."""
    der = x509.load_pem_x509_csr(pki.make_csr(holder)).public_bytes(serialization.Encoding.DER)
    body_start = 2 + (der[1] & 0x7F) if der[1] & 0x80 else 2
    info, after_info = _der_element(der, body_start)
    algorithm, _ = _der_element(der, after_info)
    signature = signer.sign(info, ec.ECDSA(hashes.SHA256()))
    bit_string = b"\x03" + _der_length(len(signature) + 1) + b"\x00" + signature
    body = info + algorithm + bit_string
    forged = b"\x30" + _der_length(len(body)) + body
    return x509.load_der_x509_csr(forged).public_bytes(serialization.Encoding.PEM)


def test_ca_is_a_p256_ca_valid_for_about_ten_years(
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
) -> None:
    cert, key = ca

    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert constraints.ca is True
    assert isinstance(key.curve, ec.SECP256R1)
    assert dt.timedelta(days=3640) < lifetime < dt.timedelta(days=3660)
    assert pki.verify_issued_by(cert, cert)


def test_server_certificate_verifies_against_the_ca_and_carries_dns_and_ip_sans(
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
) -> None:
    ca_cert, ca_key = ca

    cert, _ = pki.create_server_certificate(
        ca_cert, ca_key, ["api.example.net", "192.0.2.7", "::1"]
    )

    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["api.example.net"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("192.0.2.7"),
        ipaddress.ip_address("::1"),
    ]
    assert _eku(cert) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert pki.verify_issued_by(ca_cert, cert)
    assert not pki.verify_issued_by(pki.create_ca()[0], cert)


def test_a_san_that_is_neither_a_dns_name_nor_an_ip_is_rejected(
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
) -> None:
    with pytest.raises(ValidationError) as err:
        pki.create_server_certificate(*ca, ["bad name!"])
    assert "san" in err.value.fields


def test_signed_csr_names_the_peer_in_cn_and_uri_for_client_auth_only(
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
) -> None:
    ca_cert, ca_key = ca
    peer_key = pki.new_private_key()

    cert = pki.sign_csr(ca_cert, ca_key, pki.make_csr(peer_key), peer_id=42, days=30)

    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "peer:42"
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["elysium:peer:42"]
    assert _eku(cert) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert cert.public_key() == peer_key.public_key()
    assert cert.not_valid_after_utc - cert.not_valid_before_utc <= dt.timedelta(days=30, minutes=5)
    assert pki.verify_issued_by(ca_cert, cert)
    assert pki.peer_id_from_certificate(cert) == 42


@pytest.mark.parametrize(
    "key",
    [ed25519.Ed25519PrivateKey.generate(), rsa.generate_private_key(65537, 2048)],
    ids=["ed25519", "rsa2048"],
)
def test_csrs_with_ed25519_and_rsa_keys_are_signed_too(
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey], key: ed25519.Ed25519PrivateKey
) -> None:
    cert = pki.sign_csr(*ca, pki.make_csr(key), peer_id=7, days=1)
    assert pki.peer_id_from_certificate(cert) == 7


def test_csr_signed_by_another_key_is_rejected(
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
) -> None:
    forged = _csr_with_key_signed_by_another(pki.new_private_key(), pki.new_private_key())

    with pytest.raises(ValidationError) as err:
        pki.sign_csr(*ca, forged, peer_id=1, days=30)
    assert err.value.fields == {"csr": "signature does not match its public key"}


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "hello",
        "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
        b"\x00" * 100_000,
    ],
)
def test_garbage_instead_of_a_csr_is_a_validation_error(
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey], garbage: str | bytes
) -> None:
    with pytest.raises(ValidationError) as err:
        pki.sign_csr(*ca, garbage, peer_id=1, days=30)
    assert set(err.value.fields) == {"csr"}


def test_csr_with_a_weak_rsa_key_is_rejected(
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
) -> None:
    weak = rsa.generate_private_key(65537, 1024)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
        .sign(weak, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )

    with pytest.raises(ValidationError, match="2048"):
        pki.sign_csr(*ca, csr, peer_id=1, days=30)


def test_the_subject_a_csr_asks_for_is_ignored(
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
) -> None:
    key = pki.new_private_key()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "peer:1")]))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier("elysium:peer:1")]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )

    cert = pki.sign_csr(*ca, csr, peer_id=99, days=30)

    assert pki.peer_id_from_certificate(cert) == 99


def test_server_and_admin_certificates_name_no_peer(
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
) -> None:
    server, _ = pki.create_server_certificate(*ca)
    admin, _ = pki.create_client_certificate(*ca, "alice")

    assert pki.peer_id_from_certificate(server) is None
    assert pki.peer_id_from_certificate(admin) is None
    assert _eku(admin) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert admin.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "admin:alice"


def test_keys_are_written_0600_and_certificates_0644_and_load_back(
    tmp_path: Path, ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]
) -> None:
    cert, key = ca

    pki.write_private_key(tmp_path / "ca.key", key)
    pki.write_certificate(tmp_path / "ca.pem", cert)

    assert stat.S_IMODE((tmp_path / "ca.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "ca.pem").stat().st_mode) == 0o644
    assert pki.load_certificate(tmp_path / "ca.pem") == cert
    assert pki.load_private_key(tmp_path / "ca.key").private_numbers() == key.private_numbers()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ca.key", "ca.pem"]


def test_rewriting_a_key_replaces_it_and_keeps_it_0600(tmp_path: Path) -> None:
    path = tmp_path / "k.key"
    path.write_text("old")
    path.chmod(0o644)

    pki.write_private_key(path, pki.new_private_key())

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")


def test_pki_init_creates_ca_and_server_certificate_with_default_sans(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["pki", "init", "--dir", str(tmp_path / "pki")])

    assert result.exit_code == 0, result.output
    d = tmp_path / "pki"
    server = pki.load_certificate(d / "server.pem")
    assert sorted(pki.certificate_sans(server)) == ["127.0.0.1", "::1", "localhost"]
    assert pki.verify_issued_by(pki.load_certificate(d / "ca.pem"), server)
    for key in ("ca.key", "server.key"):
        assert stat.S_IMODE((d / key).stat().st_mode) == 0o600
    assert "created CA" in result.output


def test_pki_init_twice_keeps_the_ca_and_reissues_only_for_new_sans(tmp_path: Path) -> None:
    runner = CliRunner()
    runner.invoke(cli, ["pki", "init", "--dir", str(tmp_path)], catch_exceptions=False)
    ca_before = (tmp_path / "ca.pem").read_bytes(), (tmp_path / "ca.key").read_bytes()
    server_before = (tmp_path / "server.pem").read_bytes()

    again = runner.invoke(cli, ["pki", "init", "--dir", str(tmp_path)], catch_exceptions=False)
    new_sans = runner.invoke(
        cli,
        ["pki", "init", "--dir", str(tmp_path), "--san", "hub.test", "--san", "10.0.0.1"],
        catch_exceptions=False,
    )

    assert ((tmp_path / "ca.pem").read_bytes(), (tmp_path / "ca.key").read_bytes()) == ca_before
    assert "CA exists, kept" in again.output and "server certificate exists, kept" in again.output
    assert "CA exists, kept" in new_sans.output and "issued server certificate" in new_sans.output
    server = pki.load_certificate(tmp_path / "server.pem")
    assert (tmp_path / "server.pem").read_bytes() != server_before
    assert sorted(pki.certificate_sans(server)) == ["10.0.0.1", "hub.test"]
    assert pki.verify_issued_by(pki.load_certificate(tmp_path / "ca.pem"), server)


def test_pki_init_refuses_a_half_present_ca(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("x")

    result = CliRunner().invoke(cli, ["pki", "init", "--dir", str(tmp_path)])

    assert result.exit_code != 0
    assert (tmp_path / "ca.pem").read_text() == "x"
    assert not (tmp_path / "ca.key").exists()


def test_pki_client_issues_an_admin_certificate_and_will_not_replace_it(tmp_path: Path) -> None:
    runner = CliRunner()
    runner.invoke(cli, ["pki", "init", "--dir", str(tmp_path)], catch_exceptions=False)

    first = runner.invoke(cli, ["pki", "client", "--dir", str(tmp_path), "--name", "alice"])
    second = runner.invoke(cli, ["pki", "client", "--dir", str(tmp_path), "--name", "alice"])

    assert first.exit_code == 0, first.output
    cert = pki.load_certificate(tmp_path / "alice.pem")
    assert pki.verify_issued_by(pki.load_certificate(tmp_path / "ca.pem"), cert)
    assert stat.S_IMODE((tmp_path / "alice.key").stat().st_mode) == 0o600
    assert second.exit_code != 0
    assert (tmp_path / "alice.pem").read_bytes() == cert.public_bytes(serialization.Encoding.PEM)


def test_pki_client_without_a_ca_fails(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["pki", "client", "--dir", str(tmp_path), "--name", "bob"])

    assert result.exit_code != 0
    assert "pki init" in result.output


def test_openssl_accepts_the_server_and_a_peer_certificate_in_a_mutual_tls_handshake(
    tmp_path: Path, ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]
) -> None:
    ca_cert, ca_key = ca
    server_cert, server_key = pki.create_server_certificate(ca_cert, ca_key)
    peer_key = pki.new_private_key()
    peer_cert = pki.sign_csr(ca_cert, ca_key, pki.make_csr(peer_key), peer_id=5, days=1)
    for name, cert, key in (("server", server_cert, server_key), ("peer", peer_cert, peer_key)):
        pki.write_certificate(tmp_path / f"{name}.pem", cert)
        pki.write_private_key(tmp_path / f"{name}.key", key)
    pki.write_certificate(tmp_path / "ca.pem", ca_cert)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(tmp_path / "server.pem", tmp_path / "server.key")
    server_ctx.load_verify_locations(tmp_path / "ca.pem")
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    client_ctx = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    client_ctx.load_cert_chain(tmp_path / "peer.pem", tmp_path / "peer.key")
    seen: list[bytes | None] = []

    with socket.create_server(("127.0.0.1", 0)) as listener:

        def serve() -> None:
            raw, _ = listener.accept()
            with server_ctx.wrap_socket(raw, server_side=True) as tls:
                seen.append(tls.getpeercert(binary_form=True))
                tls.sendall(b"ok")

        thread = threading.Thread(target=serve)
        thread.start()
        with (
            socket.create_connection(listener.getsockname()[:2], timeout=5) as raw,
            client_ctx.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            assert tls.recv(2) == b"ok"
        thread.join(timeout=5)

    assert seen[0] is not None
    assert pki.peer_id_from_certificate(x509.load_der_x509_certificate(seen[0])) == 5
