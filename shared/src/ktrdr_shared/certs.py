"""Issue the TLS certificates of secure mode from a private CA (``stack.py secrets``).

One CA (10 years), one certificate for nats-server (825 days; SANs 127.0.0.1,
::1, localhost, ``nats`` (its name on compose's network) and the names and
addresses an operator adds for off-host clients) and one client certificate
per NATS user (825 days, CN = the user), all EC P-256, in the layout of
``ktrdr_shared.tls.TlsFiles``. What exists is
reused; what is missing, expires within 30 days, was not issued by the present
CA, or (the server's) no longer names the configured hosts is issued again.

Needs the ``cryptography`` package (requirements-dev.txt, installed by
``just setup``): only the machine that issues certificates runs this module.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterable, Sequence
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ktrdr_shared.store.atomic import write_bytes_atomically
from ktrdr_shared.tls import TlsFiles

DEFAULT_HOSTS = ("127.0.0.1", "::1", "localhost", "nats")  # nats: compose's service name
CA_DAYS = 3650
LEAF_DAYS = 825
RENEW_BEFORE = dt.timedelta(days=30)

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_hosts(text: str) -> list[str]:
    """Split ``KTRDR_NATS_TLS_HOSTS`` (``10.0.0.1,nats.lan``) into names and addresses.

    Raises:
        ValueError: an entry is neither an IP address nor a DNS name.
    """
    hosts = [part.strip() for part in text.split(",") if part.strip()]
    for host in hosts:
        if _ip(host) is None and not all(c.isalnum() or c in "-.*" for c in host):
            raise ValueError(f"{host!r} is neither an IP address nor a DNS name")
    return hosts


def server_hosts(extra: Iterable[str] = ()) -> list[str]:
    """Return the server certificate's names: the defaults, then ``extra`` (deduplicated)."""
    return list(dict.fromkeys([*DEFAULT_HOSTS, *extra]))


def ensure_certificates(
    directory: Path,
    users: Sequence[str],
    extra_hosts: Iterable[str] = (),
    now: dt.datetime | None = None,
) -> list[str]:
    """Create what is missing or stale of the CA, server and client files; return their names.

    Every file is written with mode 0600 (compose hands them to containers as
    secrets); the caller owns the directory's mode (0700 under ``data/secrets``).
    """
    files = TlsFiles(directory)
    now = now or dt.datetime.now(dt.UTC)
    directory.mkdir(parents=True, exist_ok=True)
    written: list[str] = []

    ca = _load(files.ca_cert, files.ca_key)
    if ca is None or _expiring(ca[0], now):
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = (_issue_ca(ca_key, now), ca_key)
        _write(files.ca_key, files.ca_cert, *ca)
        written += [files.ca_cert.name, files.ca_key.name]
    ca_cert, ca_key = ca

    hosts = server_hosts(extra_hosts)
    server = _load(files.server_cert, files.server_key)
    if server is None or not _fresh(server[0], ca_cert, now) or _sans(server[0]) != _wanted(hosts):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _issue_leaf(ca_cert, ca_key, key, "nats-server", now, server_names=hosts)
        _write(files.server_key, files.server_cert, cert, key)
        written += [files.server_cert.name, files.server_key.name]

    for user in users:
        client = _load(files.client_cert(user), files.client_key(user))
        if client is None or not _fresh(client[0], ca_cert, now):
            key = ec.generate_private_key(ec.SECP256R1())
            cert = _issue_leaf(ca_cert, ca_key, key, user, now, server_names=None)
            _write(files.client_key(user), files.client_cert(user), cert, key)
            written += [files.client_cert(user).name, files.client_key(user).name]
    return written


def subject_alternative_names(cert_file: Path) -> set[str]:
    """Return the DNS names and IP addresses a certificate file names (as text)."""
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    return {str(v.value) for v in _sans(cert)}


# -- issuing ------------------------------------------------------------------------------


def _issue_ca(key: ec.EllipticCurvePrivateKey, now: dt.datetime) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ktrdr NATS CA")])
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )


def _issue_leaf(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    key: ec.EllipticCurvePrivateKey,
    common_name: str,
    now: dt.datetime,
    server_names: Sequence[str] | None,
) -> x509.Certificate:
    """Issue a server certificate (``server_names`` given) or a client certificate."""
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server_names else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=LEAF_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
    )
    if server_names:
        names = sorted(_wanted(server_names), key=str)
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def _key_usage(cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=not cert_sign,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


# -- checking what exists -----------------------------------------------------------------


def _load(
    cert_file: Path, key_file: Path
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    """Return the certificate and its key, or None when either is missing or unreadable."""
    try:
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    except (OSError, ValueError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        return None
    return cert, key


def _expiring(cert: x509.Certificate, now: dt.datetime) -> bool:
    return cert.not_valid_after_utc - RENEW_BEFORE < now


def _fresh(cert: x509.Certificate, ca_cert: x509.Certificate, now: dt.datetime) -> bool:
    """Return True when ``cert`` was issued by ``ca_cert`` and is not about to expire."""
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return not _expiring(cert, now)


def _ip(host: str) -> IpAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _wanted(hosts: Iterable[str]) -> set[x509.GeneralName]:
    names: set[x509.GeneralName] = set()
    for host in hosts:
        ip = _ip(host)
        names.add(x509.IPAddress(ip) if ip is not None else x509.DNSName(host))
    return names


def _sans(cert: x509.Certificate) -> set[x509.GeneralName]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return set()
    return set(ext.value)


def _write(
    key_file: Path, cert_file: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> None:
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_bytes_atomically(key_file, key_pem, 0o600)
    write_bytes_atomically(cert_file, cert.public_bytes(serialization.Encoding.PEM), 0o600)
