"""Where the benches keep what is slow to make (archives of a million articles, embeddings), and at what scale.

`BENCH_ARTICLES` sets the archive's size (default 1,000,000, a busy year); `BENCH_CACHE` the folder
(default `.bench-cache/` at the repository root, ignored by git). A cached archive is reused as long as
its file is there: delete the folder to build again.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARTICLES = int(os.environ.get("BENCH_ARTICLES", "1000000"))


def folder() -> Path:
    path = Path(os.environ.get("BENCH_CACHE") or ROOT / ".bench-cache")
    path.mkdir(parents=True, exist_ok=True)
    return path


def machine() -> str:
    """The machine the figures come from, for the report: cores, memory, load."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = os.getloadavg()[0]
    return f"{platform.machine()}, {os.cpu_count()} cores, {memory:.0f} GiB, load average {load:.1f} when the report was printed"
