"""The import rules of STYLE.md, read from the source with ast: the layout is the architecture, so a test keeps it.

Layers, bottom up; a module may import its own layer, the shared modules, and what its line allows:
- shared: `domain` (the plain data passed between stages), `specs` (feeds.yaml's specs), `times` (an article's date,
  backoff, Retry-After) and `labels` (one wording for every reader). They import no other monitor module.
- config: Settings from the environment, and feeds.yaml read into domain's specs. Nothing else.
- stages: feeds, fetch (with hostpool, its per-host pool, and guard, the addresses it may connect to), extract, embed (with embed_onnx, its ONNX backend),
  classify (with tags and the phrase language it reads: phrases, event, segment), dedup, cadence (a feed's next
  interval), spikes (the rule that finds a coverage spike), websub (the push protocol's rules). A stage may import config
  (for Settings); never another stage, the store, notify, web or evaluation.
- store (monitor/store/, its migrations aside): nothing else; never a stage, notify, web or config.
- notify (monitor/notify/): nothing else; never the store or a stage.
- web (monitor/web/): the store, config (Settings: the archive's token) and export (Atom over plain rows, the
  one writer the command line's export shares with the archive); never a stage, notify or the pipeline.
- pipeline: pipeline (one feed, every stage in order), deps (what a poll needs), passes (many feeds), placement
  (the story indexes and the store's lock), delivery (the outbox's deliveries through the channels), spike_watch
  (spikes found in the store's counts, owed and sent), rescore (the store scored again) and push (WebSub
  subscriptions kept up, pushed bodies read): the one
  place, the command line aside, that imports stages, store and notify; scheduler, tasks and metrics sit above it.
- evaluation (evaluate, topic_eval, story_eval, and training: `monitor train`'s refit, cross-validated before and
  after) may import stages; no production module imports evaluation.
- the demo site (monitor/demo/) is imported only by the command line (`monitor demo`), never by the service.
- cli (monitor/cli/) is the composition root and may import anything.

No module under monitor/ is over 400 lines. No exceptions are listed: the code follows the rules as they are.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "monitor"
MAX_LINES = 400

SHARED = {"domain", "specs", "times", "labels"}
CONFIG = {"config"}
STAGES = {  # each stage with the modules that are its parts
    "feeds": {"feeds"},
    "fetch": {"fetch", "hostpool", "guard"},
    "extract": {"extract"},
    "embed": {"embed", "embed_onnx"},
    "classify": {"classify", "tags", "phrases", "event", "segment"},
    "dedup": {"dedup"},
    "cadence": {"cadence"},
    "spikes": {"spikes"},
    "websub": {"websub"},
}
PIPELINE = {"pipeline", "storing", "deps", "passes", "placement", "delivery", "spike_watch", "rescore", "push"}
ABOVE_PIPELINE = {"scheduler", "tasks", "metrics"}
OUTPUTS = {"export"}
EVALUATION = {"evaluate", "topic_eval", "story_eval", "training"}
STAGE_OF = {module: stage for stage, modules in STAGES.items() for module in modules}


def layer(module: str) -> str:
    """The layer of a module named relative to the package: store.views -> store, tags -> stage:classify."""
    head = module.split(".")[0]
    if head in {"store", "notify", "web", "cli", "demo"}:
        return head
    if head in STAGE_OF:
        return f"stage:{STAGE_OF[head]}"
    for name, members in (("shared", SHARED), ("config", CONFIG), ("pipeline", PIPELINE), ("above", ABOVE_PIPELINE),
                          ("outputs", OUTPUTS), ("evaluation", EVALUATION)):
        if head in members:
            return name
    raise AssertionError(f"monitor/{module.replace('.', '/')}.py belongs to no layer: add it to test_layout.py's map")


@cache
def modules() -> dict[str, Path]:
    """Every module of the package (its migrations aside) by its name relative to the package: store.views."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if "migrations" in parts or parts == ("cli", "__main__"):
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts:
            found[".".join(parts)] = path
    return found


def imports(module: str, path: Path) -> set[str]:
    """The monitor modules a module imports, anywhere in it (lazily too), named relative to the package."""
    here = ["monitor", *module.split(".")]
    package = here if path.name == "__init__.py" else here[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            origin = ".".join([*base, *([node.module] if node.module else [])])
            # `from monitor.store import repository` imports a module; `from monitor.domain import Config` a name
            names = [f"{origin}.{alias.name}" if f"{origin}.{alias.name}".removeprefix("monitor.") in modules() else origin for alias in node.names]
        else:
            continue
        found |= {name.removeprefix("monitor.") for name in names if name.startswith("monitor.")}
    return found - {module}


def allowed(source: str, target: str) -> bool:
    """May a module of layer `source` import one of layer `target`?"""
    if source == target or target == "shared":
        return True
    rules = {
        "shared": set(),
        "config": set(),
        "store": set(),
        "notify": set(),
        "web": {"store", "config", "outputs"},
        "outputs": set(),
        "pipeline": {"config", "store", "notify", "stage:*", "pipeline"},
        "above": {"config", "store", "notify", "pipeline", "above"},
        "evaluation": {"config", "stage:*", "evaluation"},
        "demo": set(),
        "cli": {"*"},
    }
    if source.startswith("stage:"):
        return target == "config"
    permitted = rules[source]
    return "*" in permitted or target in permitted or (target.startswith("stage:") and "stage:*" in permitted)


def test_every_import_follows_the_layers():
    broken = []
    for module, path in modules().items():
        source = layer(module)
        for target in sorted(imports(module, path)):
            if not allowed(source, layer(target)):
                broken.append(f"{module} ({source}) imports {target} ({layer(target)})")
    assert not broken, "imports against STYLE.md's layers:\n" + "\n".join(broken)


def test_the_shared_modules_import_no_monitor_module():
    """domain, times and labels are what every layer may import, so they import nothing of the monitor themselves."""
    assert {module: imports(module, modules()[module]) for module in sorted(SHARED)} == {module: set() for module in sorted(SHARED)}


def test_stages_do_not_import_each_other():
    crossing = [
        f"{module} imports {target}"
        for module, path in modules().items()
        if module in STAGE_OF
        for target in imports(module, path)
        if target in STAGE_OF and STAGE_OF[target] != STAGE_OF[module]
    ]
    assert not crossing


def test_only_the_pipeline_calls_several_stages():
    """Outside the command line (the composition root builds every stage) and the evaluation harness."""
    callers = {
        module: stages
        for module, path in modules().items()
        if layer(module) not in {"cli", "evaluation"} and module not in STAGE_OF
        if len(stages := {STAGE_OF[target] for target in imports(module, path) if target in STAGE_OF}) > 1
    }
    assert set(callers) <= PIPELINE, callers


def test_the_store_hands_out_no_rows():
    """No public function of the store returns a table's row: callers get frozen dataclasses, and edit through functions."""
    tables = {node.name for node in ast.parse((PACKAGE / "store" / "models.py").read_text()).body if isinstance(node, ast.ClassDef)}
    leaking = []
    for module, path in modules().items():
        if layer(module) != "store" or module in {"store.models", "store.db"}:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("_") and node.returns is not None:
                named = {n.id for n in ast.walk(node.returns) if isinstance(n, ast.Name)} | {
                    word for n in ast.walk(node.returns) if isinstance(n, ast.Constant) and isinstance(n.value, str)
                    for word in n.value.replace("[", " ").replace("]", " ").replace("|", " ").replace(",", " ").split()
                }
                if named & tables:
                    leaking.append(f"{module}.{node.name} returns {', '.join(sorted(named & tables))}")
    assert not leaking


@pytest.mark.parametrize("module", sorted(modules()))
def test_no_module_is_over_400_lines(module):
    lines = len(modules()[module].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"monitor/{module.replace('.', '/')}.py has {lines} lines: it holds two concerns, split it"
