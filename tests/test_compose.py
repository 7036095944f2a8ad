"""compose.yaml: valid against the Compose Specification's schema, and the production topology it promises."""

from __future__ import annotations

import copy
import json
import re

import typer.main
import yaml
from jsonschema import Draft7Validator

from monitor.cli import app

from .conftest import ROOT

SCHEMA = json.loads((ROOT / "tests" / "compose" / "compose-spec.json").read_text(encoding="utf-8"))
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
SERVICES = COMPOSE["services"]
MONITOR = ("migrate", "scheduler", "worker", "archive")  # the services that run the image
SECRET = re.compile(r"PASSWORD|TOKEN|WEBHOOK")


def schema_errors(document: dict) -> list[str]:
    """What the Compose Specification's schema (draft-07) finds wrong in a compose document."""
    Draft7Validator.check_schema(SCHEMA)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in Draft7Validator(SCHEMA).iter_errors(document)]


def test_compose_file_follows_the_compose_specification():
    assert not schema_errors(COMPOSE)


def test_the_schema_check_catches_mistakes():
    broken = copy.deepcopy(COMPOSE)
    broken["services"]["worker"]["depends_on"]["migrate"]["condition"] = "service_finished"
    broken["services"]["archive"]["helthcheck"] = broken["services"]["archive"].pop("healthcheck")
    errors = schema_errors(broken)
    assert any(e.startswith("services/worker/depends_on") for e in errors), errors
    assert any(e.startswith("services/archive") and "helthcheck" in e for e in errors), errors


def test_the_production_topology():
    assert SERVICES["db"]["image"].startswith("pgvector/pgvector:pg16")
    assert SERVICES["redis"]["image"].startswith("redis:")
    assert [SERVICES[name]["command"][:2] for name in MONITOR] == [
        ["monitor", "migrate"], ["monitor", "run"], ["monitor", "worker"], ["monitor", "serve"],
    ]  # fmt: skip
    assert SERVICES["worker"]["command"][2:] == ["--concurrency", "2"] and "replicas" in SERVICES["worker"]["deploy"]
    assert SERVICES["archive"]["command"][2:4] == ["--host", "0.0.0.0"]
    assert SERVICES["archive"]["environment"]["MONITOR_API_TOKEN"].startswith("${MONITOR_API_TOKEN:?")  # required
    assert "/readyz" in " ".join(SERVICES["archive"]["healthcheck"]["test"])
    for name in MONITOR:
        environment = SERVICES[name]["environment"]
        assert environment["MONITOR_DATABASE_URL"].startswith("postgresql://") and environment["MONITOR_BROKER_URL"].startswith("redis://")


def test_services_start_in_order_on_healthy_dependencies():
    assert SERVICES["migrate"]["depends_on"] == {"db": {"condition": "service_healthy"}}
    for name in ("scheduler", "worker", "archive"):
        assert SERVICES[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}, name
    for name, service in SERVICES.items():
        for needed, how in service.get("depends_on", {}).items():
            assert needed in SERVICES, f"{name} depends on {needed}, which is no service"
            if how["condition"] == "service_healthy":
                assert "test" in SERVICES[needed].get("healthcheck", {}), f"{name} waits for {needed} to be healthy, which has no healthcheck"


def test_secrets_come_from_the_environment():
    for name, service in SERVICES.items():
        for variable, value in (service.get("environment") or {}).items():
            if SECRET.search(variable):
                assert str(value).startswith("${"), f"{name}: {variable} is written in compose.yaml"


def test_every_command_the_compose_file_runs_exists():
    commands = set(typer.main.get_command(app).commands)
    used = {SERVICES[name]["command"][1] for name in MONITOR}
    assert used <= commands, used - commands
