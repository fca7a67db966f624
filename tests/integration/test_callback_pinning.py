"""The callback task's request over real sockets (HTTP and HTTPS servers on loopback): it connects to the
address it checked, with the name in ``Host`` and as the TLS server name, and never resolves the name a
second time (DNS rebinding); a name resolving to loopback is refused when no allow-list opens it.

The resolver is the one seam replaced (``rebind.invalid`` and ``callback.test`` exist in no DNS): if the
request resolved the name again itself, it could not connect at all.
"""

from __future__ import annotations

import datetime
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from b2b_integrations.net.addresses import ALLOWED_NETWORKS_ENV, AddressRefused
from b2b_integrations.operators.sync_callback import SyncCallbackOperator
from b2b_integrations.sync import callback

NAME = "callback.test"


@dataclass
class Receiver:
    port: int
    seen: list[dict[str, str]] = field(default_factory=list)
    server_names: list[str | None] = field(default_factory=list)


def _serve(tls: ssl.SSLContext | None) -> Iterator[Receiver]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            length = int(self.headers.get("content-length", 0))
            receiver.seen.append(
                {"host": self.headers["host"], "path": self.path, "body": self.rfile.read(length)}
            )
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver = Receiver(server.server_address[1])
    if tls is not None:
        tls.sni_callback = lambda sock, name, ctx: receiver.server_names.append(name)
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def http_receiver() -> Iterator[Receiver]:
    yield from _serve(None)


@pytest.fixture
def ca_and_https_receiver(tmp_path: Path) -> Iterator[tuple[Path, Receiver]]:
    """A private CA and an HTTPS server whose certificate is for ``callback.test`` only."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def cert(subject: str, key, issuer: str, issuer_key, ca: bool, san: str | None = None):  # noqa: ANN001, ANN202
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(san)]), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_cert = cert("test CA", ca_key, "test CA", ca_key, ca=True)
    leaf = cert(NAME, leaf_key, "test CA", ca_key, ca=False, san=NAME)
    ca_file, cert_file, key_file = tmp_path / "ca.pem", tmp_path / "leaf.pem", tmp_path / "leaf.key"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert_file, key_file)
    for receiver in _serve(tls):
        yield ca_file, receiver


def _post(url: str) -> int:
    """The callback task's own request function (it needs only the timeout of its operator)."""
    return SyncCallbackOperator._post(SimpleNamespace(timeout=10), url, b'{"status": "succeeded"}', {})  # type: ignore[arg-type]


def test_the_callback_connects_to_the_address_it_checked_not_to_a_second_resolution(
    http_receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    resolutions: list[str] = []

    def rebinding(host: str, port: int) -> list[str]:
        resolutions.append(host)
        return ["127.0.0.1"] if len(resolutions) == 1 else ["203.0.113.9"]

    monkeypatch.setattr(callback, "resolve_host", rebinding)
    monkeypatch.setenv(ALLOWED_NETWORKS_ENV, "127.0.0.1/32")
    assert _post(f"http://rebind.invalid:{http_receiver.port}/cb?token=t") == 204
    assert resolutions == ["rebind.invalid"]
    assert http_receiver.seen == [
        {
            "host": f"rebind.invalid:{http_receiver.port}",
            "path": "/cb?token=t",
            "body": b'{"status": "succeeded"}',
        }
    ]


def test_https_to_the_pinned_address_checks_the_certificate_against_the_name(
    ca_and_https_receiver: tuple[Path, Receiver], monkeypatch: pytest.MonkeyPatch
) -> None:
    ca_file, receiver = ca_and_https_receiver
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))  # httpx trusts our test CA (trust_env)
    monkeypatch.setenv(ALLOWED_NETWORKS_ENV, "127.0.0.1/32")
    monkeypatch.setattr(callback, "resolve_host", lambda host, port: ["127.0.0.1"])
    assert _post(f"https://{NAME}:{receiver.port}/cb") == 204
    assert receiver.server_names == [NAME]
    assert receiver.seen[0]["host"] == f"{NAME}:{receiver.port}"
    # The certificate is for the name, not the address: without the name as server name TLS would fail.
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        _post(f"https://127.0.0.1:{receiver.port}/cb")


def test_a_name_resolving_to_loopback_is_refused_without_an_allow_list(
    http_receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ALLOWED_NETWORKS_ENV, raising=False)
    with pytest.raises(AddressRefused, match="localhost resolves to a loopback address"):
        _post(f"http://localhost:{http_receiver.port}/cb")
    monkeypatch.setenv(ALLOWED_NETWORKS_ENV, "10.0.0.0/8")  # an allow-list that does not open loopback
    with pytest.raises(AddressRefused, match="loopback"):
        _post(f"http://localhost:{http_receiver.port}/cb")
    assert http_receiver.seen == []
