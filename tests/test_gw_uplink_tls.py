"""TLS is verified: a self-signed central API is refused unless its CA file is configured."""

import asyncio
import datetime
import ssl

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.backoff import Backoff
from gateway.uplink import Uplink
from hall_simulator.central_api import CentralServer
from hall_simulator.central_store import CentralStore
from tests.uplink_support import FakeClock, FixedRng, Sleeps, fill, outbox


def self_signed(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def test_https_needs_the_trusted_ca(tmp_path):
    async def main():
        cert_file, key_file = self_signed(tmp_path)
        server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_ctx.load_cert_chain(cert_file, key_file)
        store = CentralStore(tmp_path / "central.db", clock=FakeClock())
        server = CentralServer(store, host="127.0.0.1", ssl_context=server_ctx)
        await server.start()
        url = "https://localhost:%d" % server.port
        box = outbox(tmp_path)
        fill(box, "win-tls", [1, 2])
        try:
            options = dict(sleep=Sleeps(), backoff=Backoff(rng=FixedRng()), clock=FakeClock())
            untrusting = Uplink(box, url, "gw", "futian-1", **options)
            await untrusting.step()
            await untrusting.close()
            assert "CERTIFICATE_VERIFY_FAILED" in untrusting.status.last_error
            assert store.report()["received"] == 0
            trusting = Uplink(box, url, "gw", "futian-1", cafile=str(cert_file), **options)
            await trusting.drain()
            await trusting.close()
            assert store.report()["received"] == 2
        finally:
            await server.stop()
            store.close()
    asyncio.run(main())
