"""The time-to-alert bench's adaptive and push modes on a tiny schedule: each alerts through its own path (the interval
the adaptive rule learnt in the warm-up; items pushed through the hub and the archive's callback). No timing limits."""

from __future__ import annotations

from datetime import timedelta

from bench.latency import ADAPTIVE, ADAPTIVE_SETTINGS, PUSH, ROOT, START, Mode, Outlet, Published, fixed_feed, run_mode, site_article
from bench.latency_modes import WARM_UP_DAYS
from monitor.classify import read_labelled

OUTLETS = (Outlet("Wire", 0.5, 7200, hub=True),)  # 12 items a day: the warm-up is 24 items, polled every 2 hours
QUICK = {"host_delay": 0}  # no politeness delay between the pages of one host: the test is not about waiting


def on_topic_items(count: int) -> list[Published]:
    """Labelled on-topic items published 10, 40, 70 ... minutes into the measured hours."""
    items = [item for item in read_labelled(ROOT / "eval" / "topic_labelled.jsonl") if item.relevant][:count]
    return [Published(0, site_article(item, f"item-{n}", START + timedelta(minutes=10 + 30 * n)), True) for n, item in enumerate(items)]


def test_adaptive_mode_polls_at_the_interval_the_rule_learnt_in_the_warm_up_and_alerts(embedder, config):
    mode = Mode("adaptive", ADAPTIVE, settings={**ADAPTIVE_SETTINGS, **QUICK}, warm_up_days=WARM_UP_DAYS)
    run = run_mode(mode, OUTLETS, on_topic_items(3), hours=2, embedder=embedder, config=config, seed=1)
    [(interval, reason)] = run.intervals
    assert "items/day" in reason and interval < OUTLETS[0].interval  # the rule's, from the warm-up's items
    assert run.latencies and all(where == 0 for _, where, _ in run.latencies)
    assert run.polls >= 2 and run.pushes == 0


def test_push_mode_alerts_through_the_hub_and_the_callback(embedder, config):
    mode = Mode("push", fixed_feed, push=PUSH, settings={"poll_adaptive": False, **QUICK})
    run = run_mode(mode, OUTLETS, on_topic_items(3), hours=2, embedder=embedder, config=config, seed=1)
    assert run.pushes == 3 and run.latencies
    [(interval, _)] = run.intervals
    assert interval == OUTLETS[0].interval
