"""A throw-away PostgreSQL server for tests: `initdb` in a temporary folder, `pg_ctl` on a free port.

Uses the server binaries of Debian's `postgresql` package (or any on PATH). PostgreSQL refuses to
run as root, so under root (CI) every server command runs as an unprivileged system user.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import psycopg2

SERVER_USERS = ("postgres", "nobody")  # who runs the server when the tests run as root
SUPERUSER = "ecg_test"


def find_server_binaries() -> Path | None:
    """The folder holding `initdb` and `pg_ctl`: the newest /usr/lib/postgresql/*/bin, else PATH."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda path: int(Path(path).parent.name))
    candidates.reverse()
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(str(Path(on_path).parent))
    for folder in candidates:
        if (Path(folder) / "initdb").is_file() and (Path(folder) / "pg_ctl").is_file():
            return Path(folder)
    return None


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    username: str
    password: str

    def connect(self, db_name: str = "postgres"):
        return psycopg2.connect(
            host=self.host, port=self.port, user=self.username, password=self.password, dbname=db_name
        )

    def create_database(self, name: str) -> str:
        connection = self.connect()
        connection.autocommit = True  # CREATE DATABASE cannot run inside a transaction
        try:
            with connection.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{name}"')
        finally:
            connection.close()
        return name


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _server_account() -> pwd.struct_passwd | None:
    """None when we are not root; otherwise the unprivileged account that will own the server."""
    if os.geteuid() != 0:
        return None
    for name in SERVER_USERS:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError(f"running as root and none of the users {SERVER_USERS} exists to run PostgreSQL")


@contextmanager
def temporary_postgres(binaries: Path) -> Iterator[PostgresServer]:
    """Start a fresh PostgreSQL cluster on 127.0.0.1 with password authentication; remove it on exit."""
    account = _server_account()
    # Not under pytest's tmp_path: its parent is private to root, and the server account must enter it.
    root = Path(tempfile.mkdtemp(prefix="ecg-pg-"))
    as_server_user = {}
    if account is not None:
        os.chown(root, account.pw_uid, account.pw_gid)
        as_server_user = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
    env = {**os.environ, "HOME": str(root), "LC_ALL": "C", "LANG": "C"}

    def run(*command: str) -> None:
        result = subprocess.run(command, env=env, cwd=root, capture_output=True, text=True, **as_server_user)
        if result.returncode != 0:
            log = root / "server.log"
            raise RuntimeError(
                f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
                + (log.read_text() if log.is_file() else "")
            )

    server = PostgresServer(host="127.0.0.1", port=_free_port(), username=SUPERUSER, password=secrets.token_hex(16))
    password_file = root / "password"
    password_file.write_text(server.password)
    if account is not None:
        os.chown(password_file, account.pw_uid, account.pw_gid)
    data = root / "data"
    started = False
    try:
        initdb = [str(binaries / "initdb"), "-D", str(data), "-U", server.username, "--pwfile", str(password_file)]
        run(*initdb, "--auth", "scram-sha-256", "--encoding", "UTF8")
        options = (
            f"-c listen_addresses=127.0.0.1 -p {server.port} -k {root} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"  # throw-away data: speed over safety
        )
        run(str(binaries / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-o", options, "-w", "start")
        started = True
        yield server
    finally:
        if started:
            run(str(binaries / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)
