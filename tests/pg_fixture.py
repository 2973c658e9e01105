"""A throw-away PostgreSQL server for the feedback-store tests: initdb + pg_ctl in a temp folder.

Why a real server: the store must behave the same on PostgreSQL (several app processes) as on SQLite,
and only a real server shows that. The server runs as the ``postgres`` system user when the tests run as
root (PostgreSQL refuses to run as root), on a free loopback port with its socket in its own folder, and
is stopped afterwards. ``fsync=off``: the tests check concurrency, validation and migrations, not what a
power cut does, and fsync would only make them slower. Without the Debian ``postgresql`` package the
tests are skipped with the reason, except in CI (``CI=true``), where that is a failure.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Iterator, Optional

import pytest


def postgres_bin() -> Optional[Path]:
    """The newest installed PostgreSQL's bin folder (Debian: /usr/lib/postgresql/<major>/bin), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parent.parent.name))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_owner(cmd: list[str]) -> list[str]:
    """Run as ``postgres`` when we are root (the server refuses root), else as ourselves."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


class PostgresServer:
    """initdb + pg_ctl start on a free port; ``database()`` makes a fresh, empty database and returns its URL."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="recs-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        subprocess.run(_as_owner([str(bindir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                                  "--no-sync", "-E", "UTF8"]), check=True, capture_output=True)
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        subprocess.run(_as_owner([str(bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"),
                                  "-o", options, "-w", "-t", "60", "start"]), check=True, capture_output=True)

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{dbname}"

    def database(self) -> str:
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        subprocess.run(_as_owner([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"]),
                       check=False, capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    bindir = postgres_bin()
    if bindir is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("PostgreSQL (Debian package postgresql) is missing in CI; scripts/system-packages.sh installs it")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql); the SQLite runs still cover the store")
    try:
        server = PostgresServer(bindir)
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"PostgreSQL did not start: {exc.stderr.decode(errors='replace')[-2000:]}")
    yield server
    server.stop()
