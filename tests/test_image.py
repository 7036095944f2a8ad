"""The image holds what it needs: exactly what the Dockerfile copies, installed as it installs it, runs status and a poll."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path, PurePosixPath

import pytest
import yaml

from monitor.config import LOOPBACK_NETWORKS
from monitor.demo.server import LocalSite, Reply

from .conftest import ROOT
from .test_pipeline import HTML, RSS, page

DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")


def instructions(text: str) -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (KEYWORD, arguments), continuation lines joined, comments left out."""
    joined = text.replace("\\\n", " ")
    found = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def copies(text: str) -> list[tuple[list[str], PurePosixPath, bool]]:
    """Each COPY as (sources in the build context, destination in the image, whether it is a folder to copy into)."""
    workdir, result = PurePosixPath("/"), []
    for keyword, rest in instructions(text):
        if keyword == "WORKDIR":
            workdir = workdir / rest
        elif keyword == "COPY":
            words = [w for w in shlex.split(rest) if not w.startswith("--")]
            assert not any(w.startswith("--from") for w in shlex.split(rest)), "a COPY from another stage: teach this test"
            *sources, destination = words
            into_folder = len(sources) > 1 or destination.endswith("/") or destination in (".", "..")
            result.append((sources, workdir / destination, into_folder))
    return result


def build_context_copy(root: Path) -> Path:
    """The image's file tree under root: what each COPY puts where (a trailing / or several sources: into a folder)."""
    for sources, destination, into_folder in copies(DOCKERFILE):
        target = root / str(destination).lstrip("/")
        for source in sources:
            origin = ROOT / source
            assert origin.exists(), f"the Dockerfile copies {source}, which the repository lacks"
            place = target / origin.name if into_folder else target
            if origin.is_dir():
                shutil.copytree(origin, place, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"), dirs_exist_ok=True)
            else:
                place.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, place)
    return root


def workdir_of_install(text: str) -> PurePosixPath:
    """Where the Dockerfile runs its `pip install .` (a non-editable install)."""
    workdir = PurePosixPath("/")
    for keyword, rest in instructions(text):
        if keyword == "WORKDIR":
            workdir = workdir / rest
        elif keyword == "RUN" and "pip install ." in rest:
            assert "-e" not in shlex.split(rest), "the image must not install the package editable"
            return workdir
    raise AssertionError("the Dockerfile runs no `pip install .`")


def test_the_dockerfile_installs_non_editable_runs_as_a_user_and_checks_its_health():
    keywords = dict(instructions(DOCKERFILE))
    assert keywords["USER"] != "root" and keywords["HEALTHCHECK"].endswith('["monitor", "migrate", "--check"]')
    assert "HF_HUB_OFFLINE=1" in keywords["ENV"]
    assert workdir_of_install(DOCKERFILE) == PurePosixPath("/src")
    assert "8000" in keywords["EXPOSE"] and "serve --host 0.0.0.0" in DOCKERFILE  # the port, and what serves it


@pytest.fixture
def news_site():
    """Two feeds on a local site, dated from the real now (the commands below run with the real clock)."""
    when = format_datetime(datetime.now(timezone.utc) - timedelta(hours=1))
    items = {
        "/wire.xml": [("Britain orders Hikvision cameras out of ministries", "/1.html")],
        "/local.xml": [("Local bakery wins regional prize", "/2.html")],
    }
    with LocalSite() as site:
        for feed, entries in items.items():
            body = "".join(
                f"<item><title>{title}</title><link>{site.url(path)}</link><pubDate>{when}</pubDate></item>"
                for title, path in entries
            )
            xml = f'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>{body}</channel></rss>'
            site.routes[feed] = Reply(200, xml.encode(), RSS)
        site.routes["/1.html"] = Reply(200, page("Britain orders Hikvision cameras out of ministries over security fears"), HTML)
        site.routes["/2.html"] = Reply(200, page("Local bakery wins regional prize for sourdough"), HTML)
        yield site


def test_what_the_dockerfile_copies_installs_and_runs(tmp_path, news_site, model_cache):
    image = build_context_copy(tmp_path / "image")
    venv = tmp_path / "venv"
    # A fresh environment that borrows this one's dependencies (torch and all), not its editable monitor: a path in a
    # .pth file is added to sys.path, but the .pth files there (the editable install's finder) are not run.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True, check=True)
    (Path(purelib.stdout.strip()) / "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    source = image / str(workdir_of_install(DOCKERFILE)).lstrip("/")
    install = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--ignore-installed", "."],
        cwd=source, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr
    shutil.rmtree(source)  # as the image does: only the installed package is left

    app = image / "app"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")} | {
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "MONITOR_MODEL_CACHE": str(model_cache),  # the topic trained once per test session
        "MONITOR_HOST_DELAY": "0",
        "MONITOR_ALLOWED_NETWORKS": ",".join(LOOPBACK_NETWORKS),  # the local site is on loopback
    }
    where = subprocess.run([python, "-c", "import monitor; print(monitor.__file__)"], cwd=app, env=env, capture_output=True, text=True)
    assert where.stdout.strip().startswith(str(venv)), where.stdout + where.stderr

    monitor = venv / "bin" / "monitor"
    status = subprocess.run([monitor, "status"], cwd=app, env=env, capture_output=True, text=True, timeout=300)
    assert status.returncode == 0, status.stderr  # the shipped feeds.yaml, its topic's files and the migrations found

    shipped = yaml.safe_load((app / "feeds.yaml").read_text(encoding="utf-8"))
    shipped["feeds"] = [
        {"name": "Wire", "url": news_site.url("/wire.xml"), "interval": "1h"},
        {"name": "Local", "url": news_site.url("/local.xml"), "interval": "1h"},
    ]
    (app / "local.yaml").write_text(yaml.safe_dump(shipped, allow_unicode=True), encoding="utf-8")
    run = subprocess.run([monitor, "run", "--once", "--config", "local.yaml"], cwd=app, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert "feeds ok: 2, failed: 0; new articles: 2; relevant: 1" in run.stdout, run.stdout + run.stderr
    assert (app / "data" / "monitor.db").is_file()
    status = subprocess.run([monitor, "status", "--config", "local.yaml"], cwd=app, env=env, capture_output=True, text=True, timeout=300)
    assert "Wire" in status.stdout and "Local" in status.stdout, status.stdout + status.stderr
