"""The README documents every setting and every command (a test fails when one is missed)."""

from __future__ import annotations

import typer.main

from monitor.cli import app
from monitor.config import Settings

from .conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_every_setting_is_documented():
    missing = [f"MONITOR_{name.upper()}" for name in Settings.model_fields if f"`MONITOR_{name.upper()}`" not in README]
    assert not missing, f"README misses settings: {missing}"


def test_every_command_is_documented():
    commands = typer.main.get_command(app).commands
    missing = [name for name in commands if f"`monitor {name}" not in README]
    assert not missing, f"README misses commands: {missing}"


def test_the_two_setup_commands_are_in_the_readme_and_ci():
    assert "make run" in README and "make test" in README
    assert "make test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
