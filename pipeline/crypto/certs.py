"""The site's MQTT TLS certificates: a site CA, and broker, worker and station certificates it signs.

Responsible for: generating EC P-256 keys and X.509 certificates with `cryptography` into one folder
(`ca.pem`/`ca.key`, `broker.pem`/`broker.key`, `worker-NAME.*`, `station-NAME.*`), keys written 0600,
never overwriting a file unless asked. The broker certificate carries the host names and addresses
clients connect to; worker and station certificates are client certificates whose CN is the MQTT
user name (Mosquitto's `use_identity_as_username`).
Not responsible for: Mosquitto's configuration (deploy/mosquitto) or the MQTT client (pipeline.bus).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
LEAF_DAYS = 825  # what browsers and most TLS stacks still accept for a leaf
CA_DAYS = 3650


class CertError(ValueError):
    """A certificate request that cannot be done (bad name, missing CA, file exists)."""


@dataclass(frozen=True, slots=True)
class Issued:
    """The files a command wrote."""

    cert: Path
    key: Path


def init_ca(folder: Path, *, common_name: str = "edgeline site CA", force: bool = False) -> Issued:
    """Create the site CA (self-signed, may sign leaves only) in `folder`."""
    issued = Issued(folder / "ca.pem", folder / "ca.key")
    _refuse_overwrite(issued, force)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = _builder(name, name, key.public_key(), CA_DAYS)
    builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
    builder = builder.add_extension(_key_usage(ca=True), critical=True)
    _write(issued, builder.sign(key, hashes.SHA256()), key)
    return issued


def issue(folder: Path, role: str, name: str, *, hosts: tuple[str, ...] = (), force: bool = False) -> Issued:
    """Issue a broker (server) or worker/station (client) certificate signed by the CA in `folder`."""
    if role not in ("broker", "worker", "station"):
        raise CertError(f"unknown certificate role {role!r}: broker, worker or station")
    if not NAME.fullmatch(name):
        raise CertError(f"{role} name {name!r}: use letters, digits, '-', '_', '.' (at most 64)")
    ca_cert, ca_key = _load_ca(folder)
    stem = "broker" if role == "broker" else f"{role}-{name}"
    issued = Issued(folder / f"{stem}.pem", folder / f"{stem}.key")
    _refuse_overwrite(issued, force)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = _builder(subject, ca_cert.subject, key.public_key(), LEAF_DAYS)
    builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    builder = builder.add_extension(_key_usage(ca=False), critical=True)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if role == "broker" else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if role == "broker":
        builder = builder.add_extension(x509.SubjectAlternativeName(_sans(hosts or (name,))), critical=False)
    _write(issued, builder.sign(ca_key, hashes.SHA256()), key)
    return issued


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey, days: int
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))  # clock skew between machines
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=not ca,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _sans(hosts: tuple[str, ...]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def _load_ca(folder: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    try:
        cert = x509.load_pem_x509_certificate((folder / "ca.pem").read_bytes())
        key = serialization.load_pem_private_key((folder / "ca.key").read_bytes(), password=None)
    except FileNotFoundError:
        raise CertError(f"no site CA in {folder}: run `edgeline certs init --dir {folder}` first") from None
    except ValueError as exc:
        raise CertError(f"the CA in {folder} cannot be read ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertError(f"{folder / 'ca.key'} is not an EC key made by `edgeline certs init`")
    return cert, key


def _refuse_overwrite(issued: Issued, force: bool) -> None:
    for path in (issued.cert, issued.key):
        if path.exists() and not force:
            raise CertError(f"{path} exists; use --force to replace it")


def _write(issued: Issued, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
    issued.key.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    issued.key.unlink(missing_ok=True)  # a forced re-issue: the new file is created 0600 from the start
    fd = os.open(issued.key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    issued.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
