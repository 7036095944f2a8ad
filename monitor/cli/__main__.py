"""`python -m monitor.cli`, as the tests and the container call it."""

from monitor.cli import app

app()
