"""Run a local Apache Kafka broker (KRaft, single node) as a child process, for dev and tests.

One responsibility: format a combined broker/controller node and start, kill, restart and stop
it on 127.0.0.1 with settings that make tests fast (no initial rebalance delay, replication
factor 1, small segments and an eager log cleaner so compaction is visible within seconds). The
jars come from :mod:`streamtasks.dev.jars` (resolved once from Maven Central). It is the
reference broker for everything the embedded Tansu broker lacks (compaction, transactions, TLS,
SASL, size limits, KIP-848); it is never a production broker.

Invariants:

* Every listener keeps its port across :meth:`KafkaBroker.kill` / :meth:`KafkaBroker.start`, and
  the data directory is formatted only once, so a restart resumes the same log (a ``kill -9``
  followed by ``start`` is a broker crash and recovery).
* :meth:`KafkaBroker.start` returns only once the broker answered a metadata request with itself
  in it; otherwise the process is killed and :class:`BrokerError` carries the log tail.
* A temporary data directory (``data_dir=None``) is deleted by :meth:`KafkaBroker.close`; a
  given one is kept. A broker left running when the interpreter exits is killed.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Final

import structlog

from streamtasks.dev.broker import free_port
from streamtasks.dev.jars import (
    ENV_BROKER_CACHE,
    KAFKA_VERSION,
    ensure_kafka_jars,
    find_java,
    tail_lines,
)
from streamtasks.dev.processes import BrokerProcess, reap_process
from streamtasks.errors import BrokerError, ConfigError

__all__ = [
    "ENV_BROKER_CACHE",
    "ENV_BROKER_JAVA_OPTS",
    "KAFKA_VERSION",
    "KafkaBroker",
    "ensure_kafka_jars",
    "find_java",
]

log = structlog.get_logger(__name__)

#: JVM options for the broker (default: a small heap and the serial collector).
ENV_BROKER_JAVA_OPTS: Final = "STREAMTASKS_BROKER_JAVA_OPTS"

_DEFAULT_JAVA_OPTS: Final = "-Xms64m -Xmx384m -XX:+UseSerialGC -XX:+ExitOnOutOfMemoryError"
_LOG_TAIL_LINES: Final = 25
_CONTROLLER: Final = "CONTROLLER"
_PLAINTEXT: Final = "PLAINTEXT"
_SECURITY_PROTOCOLS: Final = frozenset({"PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"})
_LISTENER_NAME: Final = re.compile(r"^[A-Z][A-Z0-9_]*$")

# Kafka's own chatter goes to WARN; start-up, shutdown and the log cleaner stay visible.
_LOG4J2: Final = """status = error
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.out.ref = OUT
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = INFO
logger.cleaner.name = kafka.log.LogCleaner
logger.cleaner.level = INFO
"""

#: Broker settings for fast tests on one node. Callers may override any of them.
FAST_TEST_PROPERTIES: Final[Mapping[str, str]] = {
    "num.partitions": "1",
    "default.replication.factor": "1",
    "min.insync.replicas": "1",
    "offsets.topic.replication.factor": "1",
    "offsets.topic.num.partitions": "8",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "transaction.state.log.num.partitions": "4",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    "group.initial.rebalance.delay.ms": "0",
    # broker.session.timeout.ms stays at Kafka's 9 s. A shorter one (2 s, to make a restart
    # after kill -9 register sooner) fenced the broker from its own controller whenever the
    # starved 2-core machine stalled the controller's queue for a few seconds ("Timed out
    # heartbeat from broker 1", slow events of 4.6-5.1 s in its log): every partition lost
    # its leader and the CI's kill-9 test saw 7,279 sends time out after 15 s.
    # Tests use short sessions (a killed worker's partitions move within seconds), on both
    # group protocols.
    "group.min.session.timeout.ms": "1000",
    "group.consumer.min.session.timeout.ms": "3000",
    "group.consumer.session.timeout.ms": "6000",
    "group.consumer.min.heartbeat.interval.ms": "500",
    "group.consumer.heartbeat.interval.ms": "1000",
    # Compaction within seconds: small segments, an eager cleaner with a small buffer,
    # tombstones kept only briefly. Time-based rolling stays at Kafka's default (a suite makes
    # thousands of partitions; rolling each every second would hold too many files open): set
    # the topic's ``segment.ms`` to see a quiet topic compacted.
    # (a segment must hold the largest record batch: 16 MiB lets tests raise size limits)
    "log.segment.bytes": str(16 * 1024 * 1024),
    "log.cleaner.backoff.ms": "500",
    "log.cleaner.min.cleanable.ratio": "0.01",
    "log.cleaner.min.compaction.lag.ms": "0",
    "log.cleaner.delete.retention.ms": "1000",
    "log.cleaner.dedupe.buffer.size": str(8 * 1024 * 1024),
    "log.cleaner.threads": "1",
    "log.segment.delete.delay.ms": "500",
    "log.retention.check.interval.ms": "1000",
    # Two cores: few threads.
    "num.network.threads": "2",
    "num.io.threads": "2",
    "background.threads": "2",
    "num.recovery.threads.per.data.dir": "1",
    "num.replica.fetchers": "1",
}


def _cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding, not ``-``-led."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):
            return text


# -- the broker -------------------------------------------------------------------------------


class KafkaBroker(BrokerProcess):
    """A single-node Apache Kafka (KRaft, combined broker and controller) on ``host``.

    ``port=None`` picks a free port once; it then stays the same across restarts.
    ``listeners`` adds named listeners (``{"SSL": "SSL", "SCRAM": "SASL_SSL"}``: name → security
    protocol), each on its own stable port (:meth:`address`); the ``PLAINTEXT`` listener always
    exists and carries inter-broker traffic. ``properties`` are added to (and override)
    :data:`FAST_TEST_PROPERTIES`, e.g. ``ssl.keystore.location``. ``scram_users`` (name →
    password) are created with SCRAM-SHA-512 credentials when the data directory is formatted.
    """

    _title = "the Kafka broker"
    _engine = "kafka"
    _tail_lines = _LOG_TAIL_LINES

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        listeners: Mapping[str, str] | None = None,
        properties: Mapping[str, str] | None = None,
        scram_users: Mapping[str, str] | None = None,
        java_opts: str | None = None,
        cache: str | os.PathLike[str] | None = None,
    ) -> None:
        if port is not None and not 0 <= port <= 65535:
            raise ConfigError(f"broker port must be 1-65535 (or None/0 for a free one), got {port}")
        extra = dict(listeners or {})
        for name, protocol in extra.items():
            if not _LISTENER_NAME.match(name) or name in (_PLAINTEXT, _CONTROLLER):
                raise ConfigError(f"listener name {name!r}: use A-Z0-9_, not PLAINTEXT/CONTROLLER")
            if protocol not in _SECURITY_PROTOCOLS:
                raise ConfigError(f"listener {name}: unknown security protocol {protocol!r}")
        super().__init__(host)
        self._ports: dict[str, int] = {_PLAINTEXT: port or free_port(host)}
        self._ports[_CONTROLLER] = free_port(host)
        for name in extra:
            self._ports[name] = free_port(host)
        self._protocols = {_PLAINTEXT: _PLAINTEXT, _CONTROLLER: _PLAINTEXT, **extra}
        self._properties = {**FAST_TEST_PROPERTIES, **(properties or {})}
        self._scram_users = dict(scram_users or {})
        self._java_opts = (
            java_opts or os.environ.get(ENV_BROKER_JAVA_OPTS) or _DEFAULT_JAVA_OPTS
        ).split()
        self._cache = cache
        self._temp_dir: str | None = None
        if data_dir is None:
            self._temp_dir = tempfile.mkdtemp(prefix="streamtasks-kafka-")
            data_dir = self._temp_dir
        self._data_dir = Path(data_dir)
        self._finalizer = weakref.finalize(self, reap_process, None, self._temp_dir)

    # -- properties ---------------------------------------------------------------------------

    @property
    def bootstrap_servers(self) -> str:
        """``host:port`` of the PLAINTEXT listener, for ``bootstrap.servers``."""
        return self.address(_PLAINTEXT)

    @property
    def port(self) -> int:
        return self._ports[_PLAINTEXT]

    @property
    def data_dir(self) -> Path:
        return self._data_dir

    @property
    def log_path(self) -> Path:
        """The broker's output (appended to across restarts)."""
        return self._data_dir / "broker.log"

    def address(self, listener: str) -> str:
        """``host:port`` of the named listener."""
        try:
            return f"{self._host}:{self._ports[listener]}"
        except KeyError:
            raise ConfigError(f"no listener named {listener!r}") from None

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self, timeout: float = 90.0) -> None:
        """Provision (first time), format (first time) and start; wait until it answers.

        :raises BrokerNotFoundError: no Java, or no Maven while the jars are not cached.
        :raises BrokerError: Maven failed, a port is taken, the broker exited during start-up or
            did not answer within ``timeout`` seconds (with the tail of its log).
        """
        with self._lock:
            if self.is_running():
                raise BrokerError(f"{self!r} is already running")
            java = find_java()
            libs = ensure_kafka_jars(self._cache)
            self._data_dir.mkdir(parents=True, exist_ok=True)
            config = self._write_config()
            if not (self._data_dir / "kraft" / "meta.properties").exists():
                self._format(java, libs, config)
            self._launch(java, libs, config)
            try:
                self._wait_answering(timeout)
            except BaseException:
                self.kill()
                raise
            log.info("kafka broker started", bootstrap_servers=self.bootstrap_servers, pid=self.pid)

    def kill(self) -> None:
        """``kill -9`` the broker (a crash: nothing is flushed) and reap it. Idempotent."""
        self._signal_and_reap(signal.SIGKILL, timeout=10.0)

    def stop(self, timeout: float = 20.0) -> None:
        """Controlled shutdown (SIGTERM), SIGKILL after ``timeout`` seconds. Keeps the data."""
        with self._lock:
            was_running = self.is_running()
            self._signal_and_reap(signal.SIGTERM, timeout)
            if was_running:
                log.info("kafka broker stopped", bootstrap_servers=self.bootstrap_servers)

    def restart(self, *, crash: bool = True, timeout: float = 90.0) -> float:
        """Kill -9 (``crash``) or stop the broker, start it again on the same data and ports.

        :returns: seconds from the kill until the broker answered again.
        """
        started = time.monotonic()
        if crash:
            self.kill()
        else:
            self.stop()
        self.start(timeout=timeout)
        return time.monotonic() - started

    def close(self) -> None:
        """Stop the broker and delete its data directory if it is a temporary one."""
        self.stop()
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._finalizer.detach()

    def _log_file(self) -> Path:
        return self.log_path

    # -- internals ----------------------------------------------------------------------------

    def _write_config(self) -> Path:
        names = list(self._ports)
        listeners = ",".join(f"{n}://{self.address(n)}" for n in names)
        advertised = ",".join(f"{n}://{self.address(n)}" for n in names if n != _CONTROLLER)
        protocols = ",".join(f"{n}:{self._protocols[n]}" for n in names)
        lines = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{self.address(_CONTROLLER)}",
            "controller.listener.names": _CONTROLLER,
            "inter.broker.listener.name": _PLAINTEXT,
            "listeners": listeners,
            "advertised.listeners": advertised,
            "listener.security.protocol.map": protocols,
            "log.dirs": str(self._data_dir / "kraft"),
            **self._properties,
        }
        path = self._data_dir / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in lines.items()))
        (self._data_dir / "log4j2.properties").write_text(_LOG4J2)
        return path

    def _java(self, java: str, libs: Path, *args: str) -> list[str]:
        return [
            java,
            *self._java_opts,
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self._data_dir / 'log4j2.properties'}",
            "-cp",
            f"{libs}/*",
            *args,
        ]

    def _format(self, java: str, libs: Path, config: Path) -> None:
        scram = [
            arg
            for name, password in self._scram_users.items()
            for arg in ("--add-scram", f"SCRAM-SHA-512=[name={name},password={password}]")
        ]
        command = self._java(
            java,
            libs,
            "kafka.tools.StorageTool",
            "format",
            "--cluster-id",
            _cluster_id(),
            "--config",
            str(config),
            "--ignore-formatted",
            *scram,
        )
        try:
            done = subprocess.run(
                command, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120
            )
        except subprocess.TimeoutExpired as exc:
            raise BrokerError("formatting the Kafka data directory took longer than 120s") from exc
        if done.returncode != 0:
            raise BrokerError(
                f"formatting the Kafka data directory {self._data_dir} failed "
                f"(exit {done.returncode}):\n" + tail_lines(done.stdout + done.stderr)
            )

    def _launch(self, java: str, libs: Path, config: Path) -> None:
        for name, port in self._ports.items():
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind((self._host, port))
                except OSError as exc:
                    raise BrokerError(
                        f"cannot start the Kafka broker: {name} port {port} is in use ({exc}); "
                        "pick another with --port or omit it for a free one"
                    ) from exc
        fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._log_offset = os.lseek(fd, 0, os.SEEK_END)
        proc = self._spawn(self._java(java, libs, "kafka.Kafka", str(config)), fd, repr(java))
        self._finalizer.detach()
        self._finalizer = weakref.finalize(self, reap_process, proc, self._temp_dir)

    def _signal_and_reap(self, sig: signal.Signals, timeout: float) -> None:
        with self._lock:
            if self._end(sig, timeout) is None:
                return
            self._finalizer.detach()
            self._finalizer = weakref.finalize(self, reap_process, None, self._temp_dir)
