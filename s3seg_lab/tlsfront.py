"""TLS in front of a local plain-HTTP store, under AWS's own host names, for the lean path on AWS endpoints.

* ``make_pki``: a throw-away CA and a server certificate for ``*.s3.<region>.amazonaws.com`` (and the global
  ``*.s3.amazonaws.com``), made with ``cryptography`` (which moto brings).
* ``TlsFront``: a TLS-terminating TCP relay on 127.0.0.1 that forwards the plain bytes to the store (moto server
  or a scripted stub), recording the SNI names clients asked for. The Host header passes through untouched, so
  the store sees the virtual host name.
* ``aws_dns``: ``socket.getaddrinfo`` answers 127.0.0.1:<the front's port> for every ``*.amazonaws.com`` name,
  for botocore and the lean path alike (both connect through it). Nothing leaves the machine: an AWS name that
  slipped through would still land on the local front.
"""

from __future__ import annotations

import contextlib
import datetime
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

REGIONS = ("us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-2")


@dataclass(frozen=True)
class Pki:
    ca_file: str  # the CA certificate (what a client trusts)
    cert_file: str  # the server's certificate chain
    key_file: str


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_pki(directory: Path, label: str = "s3seg test CA", names: tuple[str, ...] | None = None) -> Pki:
    """A CA and a server certificate (for the S3 host names of ``REGIONS`` unless ``names``) in ``directory``."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name(label))
        .issuer_name(_name(label))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    if names is None:
        names = ("s3.amazonaws.com", "*.s3.amazonaws.com")
        for region in REGIONS:
            names += (f"s3.{region}.amazonaws.com", f"*.s3.{region}.amazonaws.com")
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(names[0]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    pem = serialization.Encoding.PEM
    (directory / "ca.pem").write_bytes(ca.public_bytes(pem))
    (directory / "server.pem").write_bytes(cert.public_bytes(pem) + ca.public_bytes(pem))
    (directory / "server.key").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return Pki(str(directory / "ca.pem"), str(directory / "server.pem"), str(directory / "server.key"))


class TlsFront:
    """TLS on 127.0.0.1:``port``, relayed as plain TCP to ``upstream`` (host, port). Counts handshakes."""

    def __init__(self, pki: Pki, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ctx.load_cert_chain(pki.cert_file, pki.key_file)
        self.sni: list[str | None] = []
        self.handshakes = 0
        self.failed_handshakes = 0
        self.ctx.sni_callback = self._on_sni
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._stopped = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _on_sni(self, sock: Any, name: str | None, ctx: Any) -> None:
        with self._lock:
            self.sni.append(name)

    def _accept(self) -> None:
        while not self._stopped:
            try:
                raw, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        raw.settimeout(10)
        try:
            tls = self.ctx.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            with self._lock:
                self.failed_handshakes += 1
            raw.close()
            return
        with self._lock:
            self.handshakes += 1
        try:
            up = socket.create_connection(self.upstream, timeout=10)
        except OSError:
            tls.close()
            return
        with self._lock:
            self._open += [tls, up]
        tls.settimeout(None)
        up.settimeout(None)
        threading.Thread(target=self._pump, args=(up, tls), daemon=True).start()
        self._pump(tls, up)

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._stopped = True
        self._listener.close()
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.close()


@contextlib.contextmanager
def aws_dns(port: int) -> Iterator[None]:
    """Every ``*.amazonaws.com`` name resolves to 127.0.0.1:``port`` in this process (any port asked for)."""
    real = socket.getaddrinfo

    def local(host: Any, service: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, (str, bytes)) and _text(host).rstrip(".").endswith(".amazonaws.com"):
            return real("127.0.0.1", port, *args, **kwargs)
        return real(host, service, *args, **kwargs)

    with mock.patch.object(socket, "getaddrinfo", local):
        yield


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
