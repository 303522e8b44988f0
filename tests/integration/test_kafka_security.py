"""TLS and SASL_SSL (SCRAM-SHA-512) for real: a worker, a client and the CLI over them.

A second local Apache Kafka serves an ``SSL`` and a ``SASL_SSL`` listener with certificates made
at test time (trustme); every client gets its security settings from ``STREAMTASKS_KAFKA_*``
environment variables only. Needs ``STREAMTASKS_TEST_BROKER=kafka`` (Tansu serves neither).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer
from cryptography.hazmat.primitives import serialization

from streamtasks.dev.kafka import KafkaBroker
from streamtasks.testing import (
    ENV_TEST_BROKER,
    BrokerKind,
    WorkerProcess,
    skip_if_tansu,
    unique_name,
    wait_for_workers,
)
from streamtasks.wire.topics import task_topic
from tests.integration.apps.basic import build
from tests.integration.conftest import APP_SPEC, ROOT, run_cli

pytestmark = [pytest.mark.integration, pytest.mark.slow]

trustme = pytest.importorskip("trustme")

USER, PASSWORD = "streamtasks-it", "it-secret-1"


class Secure:
    def __init__(self, broker: KafkaBroker, ca: Path, wrong_ca: Path) -> None:
        self.broker, self.ca, self.wrong_ca = broker, ca, wrong_ca

    def env(
        self, listener: str, *, ca: Path | None = None, password: str = PASSWORD
    ) -> dict[str, str]:
        """Client settings for ``listener`` as a user would set them."""
        env = {
            "STREAMTASKS_BOOTSTRAP_SERVERS": self.broker.address(listener),
            "STREAMTASKS_KAFKA_SSL_CA_LOCATION": str(ca or self.ca),
        }
        if listener == "SSL":
            env["STREAMTASKS_KAFKA_SECURITY_PROTOCOL"] = "SSL"
        else:
            env |= {
                "STREAMTASKS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "STREAMTASKS_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                "STREAMTASKS_KAFKA_SASL_USERNAME": USER,
                "STREAMTASKS_KAFKA_SASL_PASSWORD": password,
            }
        return env


@pytest.fixture(scope="module")
def secure(broker_kind: BrokerKind, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secure]:
    skip_if_tansu(broker_kind, "TLS and SASL are not served")
    if os.environ.get(ENV_TEST_BROKER, "").lower() != "kafka":
        pytest.skip(f"needs the local Apache Kafka engine ({ENV_TEST_BROKER}=kafka)")
    tmp = tmp_path_factory.mktemp("tls")
    ca = trustme.CA(key_type=trustme.KeyType.RSA)
    cert = ca.issue_cert("127.0.0.1", "localhost", key_type=trustme.KeyType.RSA)
    key = serialization.load_pem_private_key(cert.private_key_pem.bytes(), password=None)
    pkcs8 = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,  # the only unencrypted form Kafka's PEM store reads
        serialization.NoEncryption(),
    )
    keystore = tmp / "broker.pem"
    keystore.write_bytes(pkcs8 + b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    ca.cert_pem.write_to_path(str(tmp / "ca.pem"))
    trustme.CA().cert_pem.write_to_path(str(tmp / "wrong-ca.pem"))
    broker = KafkaBroker(
        data_dir=tmp / "kafka",
        listeners={"SSL": "SSL", "SCRAM": "SASL_SSL"},
        properties={
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(keystore),
            "sasl.enabled.mechanisms": "SCRAM-SHA-512",
            "listener.name.scram.scram-sha-512.sasl.jaas.config": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            ),
        },
        scram_users={USER: PASSWORD},
    )
    broker.start()
    try:
        yield Secure(broker, tmp / "ca.pem", tmp / "wrong-ca.pem")
    finally:
        broker.close()


@pytest.mark.parametrize("listener", ["SSL", "SCRAM"])
def test_worker_client_and_cli_work_over_tls(
    secure: Secure, listener: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ns = unique_name("sec")
    env = {**secure.env(listener), "STREAMTASKS_NAMESPACE": ns, "ITEST_PARTITIONS": "2"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # Given an app and a worker whose only security settings come from the environment
    app = build(namespace=ns)
    try:
        app.apply_topics()
        worker = WorkerProcess(
            APP_SPEC, bootstrap=env["STREAMTASKS_BOOTSTRAP_SERVERS"], env=env, cwd=str(ROOT)
        ).start()
        try:
            wait_for_workers([worker], partitions=2 * len(app.worker_topics()))
            # When a client sends a task and waits for it
            result = app.tasks["add"].send(2, 3)
            # Then the result comes back over the same listener
            assert result.get(timeout=60) == 5
            # And a bad record lands in the DLQ (written over plaintext, read back over TLS)
            raw = Producer({"bootstrap.servers": secure.broker.bootstrap_servers})
            raw.produce(task_topic(ns, "default"), value=b"not avro", key=b"bad")
            assert raw.flush(15) == 0
            deadline = time.monotonic() + 60
            letters: list[dict[str, object]] = []
            while time.monotonic() < deadline and not letters:
                listed = run_cli("dlq", "list", APP_SPEC, "--json", env=env)
                assert listed.returncode == 0, listed.stderr
                letters = json.loads(listed.stdout)
            assert [d["reason"] for d in letters] == ["undecodable"]
            # And the CLI's read commands work over TLS
            shown = run_cli("result", result.id, "--app", APP_SPEC, "--json", env=env)
            assert shown.returncode == 0, shown.stderr
            assert json.loads(shown.stdout)["status"] == "SUCCESS"
        finally:
            worker.kill()
    finally:
        app.close()


def test_a_wrong_ca_fails_at_start_up_with_a_clear_error(secure: Secure) -> None:
    env = {**secure.env("SSL", ca=secure.wrong_ca), "STREAMTASKS_NAMESPACE": unique_name("sec")}
    started = time.monotonic()
    proc = run_cli("worker", APP_SPEC, env=env, timeout=60)
    took = time.monotonic() - started
    assert proc.returncode != 0
    assert "TLS failed" in proc.stderr, proc.stderr[-2000:]
    assert "certificate verify failed" in proc.stderr
    assert took < 15, f"took {took:.1f}s"


def test_a_wrong_password_fails_at_start_up_without_a_retry_flood(secure: Secure) -> None:
    env = {
        **secure.env("SCRAM", password="not-the-password"),
        "STREAMTASKS_NAMESPACE": unique_name("sec"),
    }
    started = time.monotonic()
    proc = run_cli("worker", APP_SPEC, env=env, timeout=60)
    took = time.monotonic() - started
    assert proc.returncode != 0
    assert "authentication failed" in proc.stderr, proc.stderr[-2000:]
    assert "Authentication failed" in proc.stderr  # the broker's own reason
    assert took < 15, f"took {took:.1f}s"
    assert len(proc.stderr.splitlines()) < 20, proc.stderr
