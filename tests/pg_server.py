"""A throw-away PostgreSQL server for the storage tests.

:func:`start_postgres` finds the server binaries (``initdb``, ``pg_ctl``), creates a cluster
in a temporary folder, starts it on a free port of 127.0.0.1 and creates an empty database;
:meth:`PgServer.stop` stops it and removes the folder. Where something is missing it returns
a reason instead of a URL, saying what is missing and how to get it, so a test can
``pytest.skip(reason)``.

Environment:
    PLACEMENT_SEARCH_TEST_POSTGRES_URL: use this server (a SQLAlchemy URL such as
        ``postgresql+psycopg2://user:pw@host:5432/db``) instead of starting one.
    PLACEMENT_SEARCH_TEST_PG_BIN: look for ``initdb`` and ``pg_ctl`` in this folder only
        (default: the newest ``/usr/lib/postgresql/*/bin``, then ``PATH``).

PostgreSQL refuses to run as root; as root the server commands run as the ``postgres``
system user (created by Debian's ``postgresql`` package), which is given the temporary folder.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ENV_BIN", "ENV_URL", "PgServer", "find_binaries", "start_postgres"]

ENV_URL = "PLACEMENT_SEARCH_TEST_POSTGRES_URL"
ENV_BIN = "PLACEMENT_SEARCH_TEST_PG_BIN"
DB_NAME = "placement_search_test"
SERVER_USER = "postgres"
INSTALL_HINT = (
    "install the PostgreSQL server: `apt-get install postgresql` (Debian/Ubuntu; .ci/run does it), "
    f"or set {ENV_URL}=postgresql+psycopg2://USER@HOST:PORT/DB to use a running server"
)


@dataclass
class PgServer:
    """A server for the tests: ``url`` when there is one, else ``reason`` why not. ``external``:
    the server of ``$PLACEMENT_SEARCH_TEST_POSTGRES_URL`` (asked for, so an error, not a skip)."""

    url: str | None = None
    reason: str | None = None
    external: bool = False
    _base: Path | None = None
    _pg_ctl: Path | None = None
    _data: Path | None = None
    _as_user: list[str] = field(default_factory=list)

    def stop(self) -> None:
        """Stop a server this module started and remove its folder (nothing for an external one)."""
        if self._pg_ctl is not None and self._data is not None and (self._data / "postmaster.pid").exists():
            _run(self._as_user, [str(self._pg_ctl), "-D", str(self._data), "-m", "immediate", "-w", "stop"], self._base)
        if self._base is not None:
            shutil.rmtree(self._base, ignore_errors=True)
        self._base = self._pg_ctl = self._data = None


def _version(path: str) -> tuple[int, ...]:
    m = re.search(r"/postgresql/([0-9.]+)/bin$", path)
    return tuple(int(x) for x in m.group(1).split(".") if x) if m else (0,)


def find_binaries() -> tuple[Path, Path] | str:
    """``(initdb, pg_ctl)``, or why they cannot be found."""
    override = os.environ.get(ENV_BIN)
    if override:
        folders = [override]
        where = f"{override} (from ${ENV_BIN})"
    else:
        folders = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version, reverse=True)
        where = "/usr/lib/postgresql/*/bin or on PATH"
    for d in folders:
        initdb, pg_ctl = Path(d, "initdb"), Path(d, "pg_ctl")
        if os.access(initdb, os.X_OK) and os.access(pg_ctl, os.X_OK):
            return initdb, pg_ctl
    if not override:
        initdb_p, pg_ctl_p = shutil.which("initdb"), shutil.which("pg_ctl")
        if initdb_p and pg_ctl_p:
            return Path(initdb_p), Path(pg_ctl_p)
    return f"PostgreSQL server binaries not found: no initdb and pg_ctl in {where}; {INSTALL_HINT}"


def _user_prefix() -> list[str] | str:
    """The command prefix that runs the server commands as a non-root user, or why there is none."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam(SERVER_USER)
    except KeyError:
        return (
            f"running as root, which PostgreSQL refuses, and there is no {SERVER_USER!r} system user to run "
            f"the server as (Debian's postgresql package creates it); {INSTALL_HINT}, or run the tests as a "
            "normal user"
        )
    if shutil.which("runuser"):
        return ["runuser", "-u", SERVER_USER, "--"]
    if shutil.which("su"):
        return ["su", SERVER_USER, "-s", "/bin/sh", "-c"]  # the command follows as one quoted string
    return f"running as root, which PostgreSQL refuses, and neither runuser nor su is available to switch to {SERVER_USER!r}"


def _run(prefix: list[str], cmd: list[str], cwd: Path | None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    if prefix and prefix[0] == "su":
        full = [*prefix, shlex.join(cmd)]
    else:
        full = [*prefix, *cmd]
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
    env.pop("PGDATA", None)
    return subprocess.run(
        full,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _tail(text: str, lines: int = 6) -> str:
    rows = [r for r in text.strip().splitlines() if r.strip()]
    return " | ".join(rows[-lines:]) or "(no output)"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _make_base(prefix: list[str]) -> Path | str:
    """A temporary folder the server user can write (a root-only TMPDIR is skipped for /tmp)."""
    candidates = list(dict.fromkeys([tempfile.gettempdir(), "/tmp"]))
    tried = []
    for parent in candidates:
        try:
            base = Path(tempfile.mkdtemp(prefix="placement-search-pg-", dir=parent))
        except OSError as e:
            tried.append(f"{parent}: {e}")
            continue
        if prefix:
            user = pwd.getpwnam(SERVER_USER)
            os.chown(base, user.pw_uid, user.pw_gid)
            probe = _run(prefix, ["test", "-w", str(base)], None)
            if probe.returncode != 0:
                shutil.rmtree(base, ignore_errors=True)
                tried.append(f"{parent}: not reachable by user {SERVER_USER!r}")
                continue
        return base
    return f"no temporary folder the PostgreSQL server user can write ({'; '.join(tried)})"


def _create_database(port: int, name: str) -> str | None:
    """Create database ``name``; None, or why it failed."""
    try:
        import psycopg2
    except ModuleNotFoundError:
        return "the PostgreSQL driver psycopg2 is missing: pip install psycopg2-binary"
    try:
        conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres", connect_timeout=10)
    except psycopg2.Error as e:
        return f"cannot connect to the test server on 127.0.0.1:{port}: {str(e).strip()}"
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
    except psycopg2.Error as e:
        return f"cannot create database {name!r}: {str(e).strip()}"
    finally:
        conn.close()
    return None


def _external(url: str) -> PgServer:
    try:
        import sqlalchemy
    except ModuleNotFoundError:
        return PgServer(reason="sqlalchemy is missing: install placement-search's dependencies", external=True)
    try:
        engine = sqlalchemy.create_engine(url)
        try:
            with engine.connect() as conn:
                conn.execute(sqlalchemy.text("SELECT 1"))
        finally:
            engine.dispose()
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return PgServer(reason=f"${ENV_URL}={url}: cannot connect: {first}", external=True)
    return PgServer(url=url, external=True)


def start_postgres(db_name: str = DB_NAME) -> PgServer:
    """Start a throw-away server (or use ``$PLACEMENT_SEARCH_TEST_POSTGRES_URL``); never raises for
    a missing piece: the result then has ``reason`` set and ``url`` None."""
    url = os.environ.get(ENV_URL)
    if url:
        return _external(url)
    try:
        import psycopg2  # noqa: F401
    except ModuleNotFoundError:
        return PgServer(reason="the PostgreSQL driver psycopg2 is missing: pip install psycopg2-binary")
    found = find_binaries()
    if isinstance(found, str):
        return PgServer(reason=found)
    initdb, pg_ctl = found
    prefix = _user_prefix()
    if isinstance(prefix, str):
        return PgServer(reason=prefix)
    base = _make_base(prefix)
    if isinstance(base, str):
        return PgServer(reason=base)
    data, sock, log = base / "data", base / "sock", base / "server.log"
    server = PgServer(_base=base, _pg_ctl=pg_ctl, _data=data, _as_user=prefix)
    try:
        sock.mkdir()
        if prefix:
            user = pwd.getpwnam(SERVER_USER)
            os.chown(sock, user.pw_uid, user.pw_gid)
        r = _run(
            prefix,
            [str(initdb), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync"],
            base,
            timeout=120,
        )
        if r.returncode != 0:
            server.stop()
            return PgServer(reason=f"initdb ({initdb}) failed: {_tail(r.stdout + r.stderr)}")
        started, last, port = False, "", 0
        for _ in range(3):  # another process may take the free port before the server does
            port = _free_port()
            opts = (
                f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c full_page_writes=off -c synchronous_commit=off -c shared_buffers=16MB"
            )
            r = _run(
                prefix, [str(pg_ctl), "-D", str(data), "-l", str(log), "-o", opts, "-w", "-t", "60", "start"], base
            )
            if r.returncode == 0:
                started = True
                break
            log_text = log.read_text(errors="replace") if log.exists() else ""
            last = _tail(r.stdout + r.stderr + "\n" + log_text)
            if "already in use" not in log_text and "could not bind" not in log_text:
                break
        if not started:
            server.stop()
            return PgServer(reason=f"the PostgreSQL test server did not start ({pg_ctl} start): {last}")
        why = _create_database(port, db_name)
        if why:
            server.stop()
            return PgServer(reason=why)
    except (OSError, subprocess.SubprocessError) as e:
        server.stop()
        return PgServer(reason=f"cannot start the PostgreSQL test server: {type(e).__name__}: {e}")
    server.url = f"postgresql+psycopg2://postgres@127.0.0.1:{port}/{db_name}"
    return server
