#!/usr/bin/env python3
"""The test PKI of web-ha-tls: a CA, a certificate per server (db, redis, lb), the app
servers' client certificate, and the two bad ones the TLS drill swaps in on the load
balancer (expired, and signed by another CA). Test material only, committed so a run needs
no PKI step: `python3 make-certs.py` (python3-cryptography) writes them again into tls/."""

import datetime
import ipaddress
import pathlib

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

OUT = pathlib.Path(__file__).resolve().parent / "tls"
NOW = datetime.datetime(2026, 12, 1, tzinfo=datetime.timezone.utc)
LONG = NOW + datetime.timedelta(days=365 * 100)


def key():
    return ec.generate_private_key(ec.SECP256R1())


def name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def ca(cn):
    k = key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name(cn))
        .issuer_name(name(cn))
        .public_key(k.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW)
        .not_valid_after(LONG)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(k, hashes.SHA256())
    )
    return cert, k


def leaf(issuer, cn, sans=(), ips=(), client=False, start=NOW, end=LONG):
    cert, ca_key = issuer
    k = key()
    alt = [x509.DNSName(s) for s in sans] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    b = (
        x509.CertificateBuilder()
        .subject_name(name(cn))
        .issuer_name(cert.subject)
        .public_key(k.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH]
            ),
            critical=False,
        )
    )
    if alt:
        b = b.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    return b.sign(ca_key, hashes.SHA256()), k


def pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def pem_key(k):
    return k.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def write(stem, pair, combined=False):
    cert, k = pair
    if combined:
        # HAProxy takes the certificate and its key in one file.
        (OUT / f"{stem}.pem").write_bytes(pem(cert) + pem_key(k))
    else:
        (OUT / f"{stem}.crt").write_bytes(pem(cert))
        (OUT / f"{stem}.key").write_bytes(pem_key(k))


def main():
    OUT.mkdir(exist_ok=True)
    root = ca("hadrill test CA")
    other = ca("hadrill other CA")
    (OUT / "ca.crt").write_bytes(pem(root[0]))
    write("db", leaf(root, "db", sans=["db"]))
    write("redis", leaf(root, "redis", sans=["redis"]))
    write("app", leaf(root, "app", client=True))
    lb = dict(sans=["lb", "localhost"], ips=["127.0.0.1"])
    write("lb", leaf(root, "lb", **lb), combined=True)
    expired_start = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)
    write(
        "lb-expired",
        leaf(root, "lb", start=expired_start, end=expired_start + datetime.timedelta(days=1), **lb),
        combined=True,
    )
    write("lb-other-ca", leaf(other, "lb", **lb), combined=True)


if __name__ == "__main__":
    main()
