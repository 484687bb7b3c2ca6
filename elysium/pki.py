"""The private CA: the API's server certificate, admin client certificates, peer certificates.

Keys are ECDSA P-256. A peer's certificate is signed from the CSR its client sends at
enrollment: only the CSR's public key is used; the subject and extensions are ours, naming the
peer as ``CN=peer:<id>`` and ``URI:elysium:peer:<id>``. Private keys are written 0600 by an
atomic replace and are never logged.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from elysium.errors import ValidationError
from elysium.files import write_atomic

CA_DAYS = 3650
SERVER_DAYS = 825
CLIENT_DAYS = 365
DEFAULT_SANS = ("localhost", "127.0.0.1", "::1")
PEER_URI_PREFIX = "elysium:peer:"
PEER_CN_PREFIX = "peer:"
ADMIN_URI_PREFIX = "elysium:admin:"
MAX_CSR_BYTES = 16 * 1024
# Certificates start a little in the past so a peer whose clock lags can use them at once.
BACKDATE = dt.timedelta(minutes=5)
_DNS_NAME = re.compile(
    r"^(\*\.)?([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
    r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$"
)

CertificateKey = ec.EllipticCurvePrivateKey
CertificatePublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey


def new_private_key() -> CertificateKey:
    """A fresh ECDSA P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def create_ca(
    common_name: str = "Elysium CA", days: int = CA_DAYS
) -> tuple[x509.Certificate, CertificateKey]:
    """A self-signed CA that may sign end-entity certificates only (path length 0)."""
    key = new_private_key()
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Elysium"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        _builder(name, name, key.public_key(), days)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    return cert, key


def create_server_certificate(
    ca_cert: x509.Certificate,
    ca_key: CertificateKey,
    sans: Iterable[str] = DEFAULT_SANS,
    days: int = SERVER_DAYS,
) -> tuple[x509.Certificate, CertificateKey]:
    """A TLS server certificate for the API; each SAN is a DNS name or an IP address."""
    names = parse_sans(sans)
    key = new_private_key()
    first = names[0].value
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, str(first))])
    cert = (
        _leaf_builder(ca_cert, subject, key.public_key(), days, ExtendedKeyUsageOID.SERVER_AUTH)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def create_client_certificate(
    ca_cert: x509.Certificate, ca_key: CertificateKey, name: str, days: int = CLIENT_DAYS
) -> tuple[x509.Certificate, CertificateKey]:
    """An admin's client certificate: ``CN=admin:<name>``, ``URI:elysium:admin:<name>``."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]{0,62}", name):
        raise ValidationError(
            "name", "must be 1-63 of a-z 0-9 . _ - starting with a letter or digit"
        )
    key = new_private_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"admin:{name}")])
    san = x509.SubjectAlternativeName([x509.UniformResourceIdentifier(ADMIN_URI_PREFIX + name)])
    cert = (
        _leaf_builder(ca_cert, subject, key.public_key(), days, ExtendedKeyUsageOID.CLIENT_AUTH)
        .add_extension(san, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def make_csr(private_key: CertificateKey | ed25519.Ed25519PrivateKey) -> bytes:
    """A PEM CSR for the client to send at enrollment (the CA chooses the subject itself)."""
    algorithm = None if isinstance(private_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "elysium-peer")]))
        .sign(private_key, algorithm)
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def sign_csr(
    ca_cert: x509.Certificate, ca_key: CertificateKey, csr_pem: str | bytes, peer_id: int, days: int
) -> x509.Certificate:
    """Sign a peer's CSR: the CSR must be self-signed by its key; the peer id names the subject.

    Raises ValidationError("csr", reason) for anything that is not a well-signed CSR with an
    acceptable key. The CSR's own subject and extensions are ignored.
    """
    csr = load_csr(csr_pem)
    public = _peer_public_key(csr)
    if days < 1:
        raise ValidationError("days", "must be at least 1")
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{PEER_CN_PREFIX}{peer_id}")])
    san = x509.SubjectAlternativeName(
        [x509.UniformResourceIdentifier(f"{PEER_URI_PREFIX}{peer_id}")]
    )
    return (
        _leaf_builder(ca_cert, subject, public, days, ExtendedKeyUsageOID.CLIENT_AUTH)
        .add_extension(san, critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def load_csr(csr_pem: str | bytes) -> x509.CertificateSigningRequest:
    """Parse a PEM CSR and check its self-signature, or raise ValidationError("csr", ...)."""
    data = csr_pem.encode() if isinstance(csr_pem, str) else csr_pem
    if not isinstance(data, bytes) or not data.strip():
        raise ValidationError("csr", "must be a PEM certificate signing request")
    if len(data) > MAX_CSR_BYTES:
        raise ValidationError("csr", f"is larger than {MAX_CSR_BYTES} bytes")
    try:
        csr = x509.load_pem_x509_csr(data)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ValidationError("csr", "is not a PEM certificate signing request") from None
    try:
        valid = csr.is_signature_valid
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        valid = False
    if not valid:
        raise ValidationError("csr", "signature does not match its public key")
    return csr


def check_csr(csr_pem: str | bytes) -> None:
    """Refuse what ``sign_csr`` would refuse, without the CA key (ValidationError("csr"))."""
    _peer_public_key(load_csr(csr_pem))


def peer_id_from_certificate(cert: x509.Certificate) -> int | None:
    """The peer id a peer certificate names, or None for any other certificate.

    The SAN URI ``elysium:peer:<id>`` and the CN ``peer:<id>`` must agree. This does not check
    who issued the certificate: call it on a certificate the TLS layer (or
    :func:`verify_issued_by`) has verified against the CA.
    """
    uri_ids = set()
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
            if uri.startswith(PEER_URI_PREFIX):
                uri_ids.add(uri.removeprefix(PEER_URI_PREFIX))
    except x509.ExtensionNotFound:
        pass
    cn_ids = {
        str(a.value).removeprefix(PEER_CN_PREFIX)
        for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if str(a.value).startswith(PEER_CN_PREFIX)
    }
    if len(uri_ids) != 1 or cn_ids != uri_ids:
        return None
    (text,) = uri_ids
    if not re.fullmatch(r"[1-9][0-9]{0,18}", text):
        return None
    return int(text)


def verify_issued_by(
    ca_cert: x509.Certificate, cert: x509.Certificate, now: dt.datetime | None = None
) -> bool:
    """Whether ``cert`` was signed by ``ca_cert`` and is within its validity period now."""
    return signed_by(ca_cert, cert) and valid_at(cert, now)


def signed_by(ca_cert: x509.Certificate, cert: x509.Certificate) -> bool:
    """Whether ``ca_cert`` signed ``cert`` (whenever that was)."""
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def valid_at(cert: x509.Certificate, now: dt.datetime | None = None) -> bool:
    """Whether ``now`` (default: now) is within ``cert``'s validity period."""
    moment = now or dt.datetime.now(dt.UTC)
    return cert.not_valid_before_utc <= moment <= cert.not_valid_after_utc


def parse_sans(values: Iterable[str]) -> list[x509.GeneralName]:
    """DNS names and IP addresses for a server certificate, or ValidationError("san", ...)."""
    names: list[x509.GeneralName] = []
    for value in values:
        text = value.strip()
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(text)))
            continue
        except ValueError:
            pass
        if len(text) > 253 or not _DNS_NAME.match(text):
            raise ValidationError("san", f"{value!r} is neither a DNS name nor an IP address")
        names.append(x509.DNSName(text.lower()))
    if not names:
        raise ValidationError("san", "at least one DNS name or IP address is needed")
    return list(dict.fromkeys(names))


def certificate_sans(cert: x509.Certificate) -> list[str]:
    """A certificate's DNS and IP subject alternative names as text."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    dns = san.get_values_for_type(x509.DNSName)
    ips = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return [*dns, *ips]


def serial_hex(cert: x509.Certificate) -> str:
    """The serial number as lowercase hex (what ``peers.certificate_serial`` stores)."""
    return format(cert.serial_number, "x")


def certificate_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def load_certificate(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def load_private_key(path: Path) -> CertificateKey:
    """Read an unencrypted PEM ECDSA private key."""
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path}: not an ECDSA private key")
    return key


def write_certificate(path: Path, cert: x509.Certificate) -> None:
    """Write a PEM certificate (mode 0644) by atomic replace."""
    write_atomic(path, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def write_private_key(path: Path, key: CertificateKey) -> None:
    """Write an unencrypted PEM private key, mode 0600 from its creation, by atomic replace."""
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_atomic(path, data, 0o600)


def _peer_public_key(csr: x509.CertificateSigningRequest) -> CertificatePublicKey:
    public = csr.public_key()
    if isinstance(public, ec.EllipticCurvePublicKey):
        if public.curve.name not in ("secp256r1", "secp384r1"):
            raise ValidationError("csr", "ECDSA keys must be on P-256 or P-384")
        return public
    if isinstance(public, rsa.RSAPublicKey):
        if public.key_size < 2048:
            raise ValidationError("csr", "RSA keys must be at least 2048 bits")
        return public
    if isinstance(public, ed25519.Ed25519PublicKey):
        return public
    raise ValidationError("csr", "key must be ECDSA P-256/P-384, Ed25519 or RSA")


def _key_usage(*, cert_sign: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public: CertificatePublicKey,
    days: int,
    not_after_limit: dt.datetime | None = None,
) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    not_after = now + dt.timedelta(days=days)
    if not_after_limit is not None:
        not_after = min(not_after, not_after_limit)  # never outlive the issuing CA
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
    )


def _leaf_builder(
    ca_cert: x509.Certificate,
    subject: x509.Name,
    public: CertificatePublicKey,
    days: int,
    usage: x509.ObjectIdentifier,
) -> x509.CertificateBuilder:
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        _builder(subject, ca_cert.subject, public, days, ca_cert.not_valid_after_utc)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
    )
