"""The command line: `monitor run`, `poll`, `worker`, `migrate`, `status`, `digest`, `demo`, `export`, `score`, `eval`, `rescore`, `label`, `train`, `serve`, `search`."""

import faulthandler

# A crash in a native library (lxml, torch) prints every thread's Python stack to stderr, not just "Segmentation fault".
faulthandler.enable()

# Each module adds its commands to app; `monitor --help` lists them in this order.
from monitor.cli import service  # noqa: F401  isort: skip
from monitor.cli import distributed  # noqa: F401  isort: skip
from monitor.cli import articles  # noqa: F401  isort: skip
from monitor.cli import reader  # noqa: F401  isort: skip
from monitor.cli import archive  # noqa: F401  isort: skip
from monitor.cli.common import app

__all__ = ["app"]
