"""Provision Apache Kafka for the local broker engine: a Java runtime and the pinned jars.

One responsibility: find a Java >= 17 and resolve the jars of :data:`KAFKA_VERSION` from Maven
Central into a cache directory, once (:mod:`streamtasks.dev.kafka` runs them).

Invariants: a finished cache carries a marker and is never resolved again; concurrent
resolutions are serialised by a file lock; no Java or no Maven is a
:class:`BrokerNotFoundError` with one line saying what to install; Maven that fails or takes
too long is a :class:`BrokerError`, never a hang.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Final

import structlog

from streamtasks.errors import BrokerError, BrokerNotFoundError

__all__ = ["ENV_BROKER_CACHE", "KAFKA_VERSION", "ensure_kafka_jars", "find_java", "tail_lines"]

log = structlog.get_logger(__name__)

#: The Apache Kafka release the broker engine runs (and the tests are run against).
KAFKA_VERSION: Final = "4.1.1"
_SCALA_BINARY: Final = "2.13"
_SLF4J_VERSION: Final = "2.0.17"
_LOG4J_VERSION: Final = "2.24.3"
_DEPENDENCY_PLUGIN: Final = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"

#: Directory for the resolved jars (default ``$XDG_CACHE_HOME/streamtasks`` or ``~/.cache/...``).
#: Not ``STREAMTASKS_KAFKA_*``: that prefix is reserved for librdkafka client properties.
ENV_BROKER_CACHE: Final = "STREAMTASKS_BROKER_CACHE"


_MIN_JAVA: Final = 17
_MAVEN_TIMEOUT: Final = 600.0
_TAIL_LINES: Final = 25


def tail_lines(text: str, lines: int = _TAIL_LINES) -> str:
    """The last ``lines`` lines of ``text``."""
    return "\n".join(text.strip().splitlines()[-lines:])


_POM: Final = f"""<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by streamtasks: the jars of a single-node Apache Kafka broker. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>streamtasks.devbroker</groupId>
  <artifactId>kafka-broker-runtime</artifactId>
  <version>{KAFKA_VERSION}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_{_SCALA_BINARY}</artifactId>
      <version>{KAFKA_VERSION}</version>
    </dependency>
    <dependency>
      <groupId>org.slf4j</groupId>
      <artifactId>slf4j-api</artifactId>
      <version>{_SLF4J_VERSION}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j2-impl</artifactId>
      <version>{_LOG4J_VERSION}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-core</artifactId>
      <version>{_LOG4J_VERSION}</version>
    </dependency>
  </dependencies>
</project>
"""


def find_java() -> str:
    """Path of a Java >= 17 runtime: ``$JAVA_HOME/bin/java``, else ``java`` on ``PATH``.

    :raises BrokerNotFoundError: none found, or too old (one line saying what to install).
    """
    java_home = os.environ.get("JAVA_HOME")
    candidate = os.path.join(java_home, "bin", "java") if java_home else shutil.which("java")
    if not candidate or not os.access(candidate, os.X_OK):
        raise BrokerNotFoundError(
            f"the Kafka broker engine needs Java {_MIN_JAVA}+ and none was found "
            "(no JAVA_HOME, no 'java' on PATH): install a JDK or JRE, e.g. "
            "'apt-get install openjdk-17-jre-headless'"
        )
    try:
        out = subprocess.run(
            [candidate, "-version"], capture_output=True, text=True, timeout=30, check=False
        ).stderr
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BrokerNotFoundError(f"could not run {candidate!r} -version: {exc}") from exc
    match = re.search(r'version "(\d+)', out)
    if match is None or int(match.group(1)) < _MIN_JAVA:
        found = match.group(1) if match else "unknown"
        raise BrokerNotFoundError(
            f"the Kafka broker engine needs Java {_MIN_JAVA}+, {candidate} is version {found}: "
            "install a newer JDK, e.g. 'apt-get install openjdk-17-jre-headless'"
        )
    return candidate


def _cache_root() -> Path:
    explicit = os.environ.get(ENV_BROKER_CACHE)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "streamtasks"


def ensure_kafka_jars(cache: str | os.PathLike[str] | None = None) -> Path:
    """The directory holding every jar of Kafka :data:`KAFKA_VERSION`, resolved on first use.

    ``cache`` defaults to ``$STREAMTASKS_BROKER_CACHE`` or the user's cache directory. The first
    call writes a pinned ``pom.xml`` there and runs ``mvn dependency:copy-dependencies``.

    :raises BrokerNotFoundError: the jars are not cached and ``mvn`` is not on ``PATH``.
    :raises BrokerError: Maven failed or did not finish within 10 minutes.
    """
    home = Path(cache) if cache is not None else _cache_root()
    home = home / f"kafka_{_SCALA_BINARY}-{KAFKA_VERSION}"
    libs = home / "libs"
    marker = libs / ".complete"
    if marker.exists():
        return libs
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists():  # resolved by someone else while this call waited
            return libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise BrokerNotFoundError(
                f"the Kafka broker engine resolves Apache Kafka {KAFKA_VERSION} from Maven "
                "Central once, and 'mvn' is not on PATH: install Maven, e.g. "
                "'apt-get install maven'"
            )
        (home / "pom.xml").write_text(_POM)
        partial = home / "libs.partial"
        shutil.rmtree(partial, ignore_errors=True)
        command = [
            mvn,
            "--batch-mode",
            "--quiet",
            "--file",
            str(home / "pom.xml"),
            f"{_DEPENDENCY_PLUGIN}:copy-dependencies",
            f"-DoutputDirectory={partial}",
            "-DincludeScope=runtime",
            # An unreachable repository fails within a minute rather than Maven's 30 min.
            "-Dmaven.wagon.http.retryHandler.count=1",
            "-Dmaven.wagon.rto=60000",
        ]
        log.info("resolving the Kafka broker jars with Maven", version=KAFKA_VERSION, cache=home)
        started = time.monotonic()
        try:
            done = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=_MAVEN_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise BrokerError(
                f"Maven did not resolve Apache Kafka {KAFKA_VERSION} within "
                f"{_MAVEN_TIMEOUT:g}s; is Maven Central reachable? ({' '.join(command)})"
            ) from exc
        if done.returncode != 0 or not any(partial.glob("kafka_*.jar")):
            raise BrokerError(
                f"Maven could not resolve Apache Kafka {KAFKA_VERSION} (exit {done.returncode}; "
                f"is Maven Central reachable?): {' '.join(command)}\n"
                + tail_lines(done.stdout + done.stderr)
            )
        shutil.rmtree(libs, ignore_errors=True)
        partial.rename(libs)
        marker.write_text(f"{KAFKA_VERSION}\n")
        log.info(
            "Kafka broker jars cached", libs=str(libs), seconds=round(time.monotonic() - started)
        )
        return libs
