"""A throwaway PostgreSQL cluster for the live tests, on 127.0.0.1 and a free port.

:func:`start_postgres` runs ``initdb`` in a new temporary directory (owned by
the ``postgres`` user when the tests run as root: PostgreSQL refuses to run
as root, so ``initdb`` and ``postgres`` run through ``runuser -u postgres
--``), starts ``postgres`` listening on 127.0.0.1 only, with its Unix socket
in that directory and ``fsync=off`` (nothing needs to survive a crash),
waits until it accepts connections (bounded polling) and returns a
:class:`PostgresCluster`. :meth:`PostgresCluster.stop` ends the postmaster
by its PID (``SIGQUIT``: immediate shutdown) and removes the directory.

The ``postgres_cluster`` fixture does both for a test session. It skips,
saying why, only when the PostgreSQL binaries are not installed, and fails
instead when the environment variable ``CI`` is ``"true"``.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.smtpd import free_port

__all__ = ["PostgresCluster", "find_binaries", "postgres_cluster", "start_postgres"]

_START_TIMEOUT = 30.0
_STOP_TIMEOUT = 10.0
_PORT_TRIES = 5
_USER = "postgres"


def find_binaries() -> Path | None:
    """Return the directory holding ``initdb`` and ``postgres``, or None."""
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    return Path(versions[0]).parent if versions else None


def _as_postgres() -> list[str]:
    """The command prefix that runs a program as the ``postgres`` user when we are root."""
    return ["runuser", "-u", _USER, "--"] if os.geteuid() == 0 else []


@dataclass
class PostgresCluster:
    """A running cluster: where it listens, its postmaster and its directory."""

    host: str
    port: int
    directory: Path
    process: subprocess.Popen[bytes]
    log: Path
    user: str = _USER
    _stopped: bool = field(default=False, repr=False)

    def connect(self, dbname: str = "postgres") -> Any:
        """Return a psycopg connection (autocommit) to ``dbname``."""
        import psycopg

        return psycopg.connect(
            host=self.host, port=self.port, user=self.user, dbname=dbname, autocommit=True,
            connect_timeout=5,
        )  # fmt: skip

    def create_database(self, name: str) -> dict[str, Any]:
        """Create database ``name`` (dropped first if it exists); return its Django settings."""
        with self.connect() as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.django_settings(name)

    def django_settings(self, name: str) -> dict[str, Any]:
        """Return the ``DATABASES`` entry of database ``name`` on this cluster."""
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": name,
            "USER": self.user,
            "HOST": self.host,
            "PORT": str(self.port),
        }

    def postmaster_pid(self) -> int | None:
        """Return the PID ``postmaster.pid`` names, or None."""
        try:
            return int((self.directory / "data" / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def log_text(self) -> str:
        """Return what the server logged so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        """End the postmaster by its PID (immediate shutdown) and remove the directory."""
        if self._stopped:
            return
        self._stopped = True
        pid = self.postmaster_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGQUIT)
        try:
            self.process.wait(_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.process.kill()
            self.process.wait(_STOP_TIMEOUT)
        shutil.rmtree(self.directory, ignore_errors=True)


def _ready(cluster: PostgresCluster) -> bool:
    import psycopg

    try:
        with cluster.connect():
            return True
    except psycopg.OperationalError:
        return False


def start_postgres(binaries: Path) -> PostgresCluster:
    """Create and start a cluster with the programs in ``binaries``; return it once it answers.

    Raises:
        RuntimeError: the cluster did not start (the server's log is in the text).
    """
    directory = Path(tempfile.mkdtemp(prefix="amsdal-outbox-pg-"))
    try:
        if os.geteuid() == 0:
            shutil.chown(directory, _USER, _USER)
        data = directory / "data"
        subprocess.run(
            [*_as_postgres(), str(binaries / "initdb"), "-D", str(data), "-U", _USER,
             "--auth=trust", "--encoding=UTF8", "--no-sync"],
            cwd=directory, check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        for _ in range(_PORT_TRIES):
            cluster = _start_on(binaries, directory, free_port())
            if cluster is not None:
                return cluster
        raise RuntimeError(f"PostgreSQL did not start on a free port in {_PORT_TRIES} tries")
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise


def _start_on(binaries: Path, directory: Path, port: int) -> PostgresCluster | None:
    """Start the postmaster on ``port``; None if the port was taken meanwhile."""
    log = directory / f"postgres-{port}.log"
    log.touch()
    if os.geteuid() == 0:
        shutil.chown(log, _USER, _USER)
    options = {
        "listen_addresses": "127.0.0.1",
        "port": str(port),
        "unix_socket_directories": str(directory),
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "max_connections": "100",
    }
    command = [*_as_postgres(), str(binaries / "postgres"), "-D", str(directory / "data")]
    for name, value in options.items():
        command += ["-c", f"{name}={value}"]
    with log.open("ab") as output:
        process = subprocess.Popen(
            command, cwd=directory, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    cluster = PostgresCluster("127.0.0.1", port, directory, process, log)
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            if "Address already in use" in cluster.log_text():
                return None
            raise RuntimeError(
                f"PostgreSQL exited with {process.returncode}:\n{cluster.log_text()}"
            )
        if _ready(cluster):
            return cluster
        time.sleep(0.05)
    cluster.stop()
    raise RuntimeError(f"PostgreSQL did not answer within {_START_TIMEOUT}s:\n{cluster.log_text()}")


def unavailable(reason: str) -> None:
    """Skip the test, saying why; under ``CI=true`` fail instead."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: a missing component is a failure, not a skip)")
    print(f"SKIPPED: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """A PostgreSQL cluster for the session, stopped by its PID afterwards."""
    binaries = find_binaries()
    if binaries is None:
        unavailable("PostgreSQL is not installed (no initdb; `make services` installs it)")
    assert binaries is not None
    try:
        import psycopg  # noqa: F401
    except ImportError:
        unavailable("psycopg is not installed (the dev extra installs it)")
    cluster = start_postgres(binaries)
    try:
        yield cluster
    finally:
        cluster.stop()
