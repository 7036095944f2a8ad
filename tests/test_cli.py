"""The command line as users and scripts call it: run --once, the service's clean stop, export, status, score."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from xml.etree import ElementTree

import httpx
from typer.testing import CliRunner

from monitor.cli import app

from .conftest import ROOT


def monitor(env, *args, **kwargs):
    return subprocess.run([sys.executable, "-m", "monitor.cli", *args], env=env, capture_output=True, text=True, timeout=300, **kwargs)


def invoke(env, *args, input=None):
    result = CliRunner().invoke(app, list(args), env=env, input=input, catch_exceptions=False)
    return result


def test_run_once_then_export_and_status(workdir):
    tmp_path, env = workdir
    result = monitor(env, "run", "--once")
    assert result.returncode == 0, result.stderr
    assert "feeds ok: 1, failed: 1; new articles: 2" in result.stdout
    assert "failed: Broken Feed: HTTP 500" in result.stdout
    assert re.search(r"the pass took [\d.]+ s: [\d.]+ new articles per second \(the models loaded before it, in [\d.]+ s\)", result.stdout), result.stdout
    assert "Broken Feed" in result.stderr and "down.xml" in result.stderr  # logs name the feed and URL

    again = monitor(env, "run", "--once")
    assert "new articles: 0" in again.stdout and "the pass took" not in again.stdout

    rows = [json.loads(line) for line in invoke(env, "export", "--format", "jsonl").stdout.splitlines()]
    assert len(rows) == 2
    for key in ("url", "title", "source", "published", "text", "score", "relevant", "story_id", "duplicate_of", "vendors", "countries", "actions", "why"):
        assert all(key in row for row in rows), key
    by_title = {row["title"]: row for row in rows}
    assert by_title["Britain orders Hikvision cameras out of ministries"]["relevant"] is True
    assert by_title["Local bakery wins regional prize"]["relevant"] is False
    assert all(row["source"] == "Local News" and row["text"] for row in rows)

    relevant = invoke(env, "export", "--relevant-only").stdout.splitlines()
    assert len(relevant) == 1

    table = list(csv.DictReader(io.StringIO(invoke(env, "export", "--format", "csv").stdout)))
    assert len(table) == 2 and json.loads(table[0]["vendors"]) is not None

    atom = ElementTree.fromstring(invoke(env, "export", "--format", "atom").stdout.split("\n", 1)[1])
    assert len(atom.findall("{http://www.w3.org/2005/Atom}entry")) == 2

    status = invoke(env, "status").stdout
    assert "Local News" in status and "Broken Feed" in status and "HTTP 500" in status


def test_bad_export_format_and_topic(workdir):
    _, env = workdir
    assert invoke(env, "export", "--format", "xml").exit_code == 2
    assert invoke(env, "export", "--topic", "nope").exit_code == 2


def test_malformed_config_is_a_clear_error(workdir):
    tmp_path, env = workdir
    bad = tmp_path / "bad.yaml"
    bad.write_text("feeds:\n  - name: X\n    url: ftp://x\n" "topics:\n  - {name: t, description: d}\n", encoding="utf-8")
    result = invoke(env, "run", "--once", "--config", str(bad))
    assert result.exit_code == 2
    assert f"{bad}:3: feeds.0.url" in result.output


def test_score_keeps_order_and_reports_bad_lines(workdir):
    _, env = workdir
    lines = [
        {"id": "a", "title": "Council votes to rip out Chinese-made CCTV cameras from schools", "text": "The council banned the cameras over security fears."},
        "not json",
        {"id": "b", "title": "Recipe: a quick tomato soup", "text": "Chop the tomatoes and simmer."},
    ]
    stdin = "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n"
    result = invoke(env, "score", "-", input=stdin)
    assert result.exit_code == 0, result.output
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert [o["id"] for o in out] == ["a", None, "b"]
    assert out[1]["error"].startswith("line 2")
    assert out[0]["relevant"] is True and out[2]["relevant"] is False
    assert 0 <= out[2]["score"] <= 1 and "why" in out[0]


def test_service_stops_cleanly_on_sigterm(workdir):
    _, env = workdir
    process = subprocess.Popen([sys.executable, "-m", "monitor.cli", "run"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        seen = ""
        while "scheduler started" not in seen and time.monotonic() < deadline:
            seen += process.stderr.readline()
        assert "scheduler started with 5 jobs" in seen  # two feeds, the outbox, the hourly poll summary and the look for spikes
        assert "2 feeds from" in seen and "archive links are off" in seen  # the start-up summary
        process.send_signal(signal.SIGTERM)
        _, rest = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 0
    assert "finishing the work in hand" in rest
    assert re.search(r"stopped after \d+ polls; \d+ articles stored", rest)


def test_serve_never_logs_the_token(tmp_path, model_cache):
    """With --verbose uvicorn logs every request's address: a ?token=… in it is written as [redacted]."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        "MONITOR_CONFIG": str(ROOT / "feeds.yaml"),
        "MONITOR_DATABASE_URL": f"sqlite:///{tmp_path / 'monitor.db'}",
        "MONITOR_MODEL_CACHE": str(model_cache),
        "MONITOR_API_TOKEN": "s3cret-t0ken",
    }
    command = [sys.executable, "-m", "monitor.cli", "serve", "--port", str(port), "--verbose"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                assert httpx.get(f"{base}/api/search?token=s3cret-t0ken").status_code == 200
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and process.poll() is None, "the archive did not start"
                time.sleep(0.3)
        assert httpx.get(f"{base}/?q=Hikvision&token=s3cret-t0ken").status_code == 303
        assert httpx.get(f"{base}/feed.atom?%74oken=s3cret-t0ken").status_code == 200
        assert httpx.get(f"{base}/api/search?token=wrong-t0ken").status_code == 401
    finally:
        process.terminate()
        output = process.communicate(timeout=60)[0]
    assert "GET /api/search?token=[redacted]" in output and "GET /feed.atom?%74oken=[redacted]" in output, output[-2000:]
    assert "s3cret-t0ken" not in output and "wrong-t0ken" not in output
