"""Topic detection: trained once and cached, beats keyword alerts, explains itself, re-scores stored articles."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from monitor.classify import Document, TopicScorer, read_labelled
from monitor.store.models import ArticleTopic
from monitor.topic_eval import evaluate, read_negatives

from .conftest import ROOT, shared_path


@pytest.fixture(scope="session")
def scorer(config, embedder, tmp_path_factory):
    topic = config.topics[0]
    training = [item for path in topic.training for item in read_labelled(path)]
    return TopicScorer(topic, embedder, training=training, cache_dir=tmp_path_factory.mktemp("models"))


def test_the_labelled_set_meets_its_brief():
    items = read_labelled(ROOT / "eval" / "topic_labelled.jsonl")
    relevant = [i for i in items if i.relevant]
    assert len(items) >= 250 and len(relevant) >= 100 and len(items) - len(relevant) >= 150
    assert sum(1 for i in relevant if not i.vendors) >= 15
    vocabulary = {"ban", "removal", "blacklist", "sanction", "procurement_restriction", "call_for_ban", "investigation", "reversal", "reaction"}
    assert {a for i in relevant for a in i.actions} == vocabulary
    out_of_scope = {"adoption", "reverse_direction", "vendor_business_background_sanctions", "app_ban", "chip_export_controls", "tariffs", "chinese_hacking", "camera_privacy_no_chinese_vendor"}
    assert all(i.kind for i in items) and out_of_scope <= {i.kind for i in items if not i.relevant}
    assert {"telecom_equipment", "certification", "wire_brief"} <= {i.kind for i in relevant}


def test_detector_beats_keyword_alerts_by_a_margin(scorer):
    report = evaluate(scorer, scorer.training, cross_validate=True)
    detector, keywords = report["detector"], report["keyword_baseline"]
    assert detector["f1"] >= keywords["f1"] + 0.15, report
    assert detector["precision"] >= keywords["precision"] and detector["recall"] >= keywords["recall"], report
    tags = report["tags"]
    assert tags["vendors_exact"] >= 0.85 and tags["acting_country_found"] >= 0.85, tags


def test_few_false_positives_on_real_news(scorer):
    negatives = read_negatives(shared_path("data", "negatives", "feed_items.jsonl"))
    verdicts = scorer.score(negatives, scorer.embedder.embed([d.for_embedding for d in negatives]))
    flagged = [d.title for d, v in zip(negatives, verdicts) if v.relevant]
    assert len(flagged) / len(negatives) <= 0.005, flagged


SEED_TITLES = {
    "000_bb84923c384c9b4f.txt": "EU taps Chinese technology linked to Muslim internment camps in Xinjiang",
    "002_bb8122ba93afa11b.txt": "UK to remove Chinese-made surveillance equipment from sensitive government sites",
}


def test_seed_articles_are_caught_with_tags_and_evidence(scorer):
    seeds = shared_path("seeds")
    documents = [Document(title, (seeds / name).read_text(encoding="utf-8")) for name, title in SEED_TITLES.items()]
    verdicts = scorer.score(documents, scorer.embedder.embed([d.for_embedding for d in documents]))
    assert all(v.relevant for v in verdicts)
    eu, uk = verdicts
    assert "Hikvision" in eu.vendors and "EU" in eu.countries
    assert {"Hikvision", "Dahua"} <= set(uk.vendors) and "GB" in uk.countries and "removal" in uk.actions
    assert uk.why["vendor_phrases"] and uk.why["action_phrases"] and uk.why["closest_example"]


def test_a_story_that_names_no_vendor_is_caught(scorer):
    document = Document(
        "Chinese-made cameras pulled from army bases",
        "The defence ministry ordered every surveillance camera made in China removed from military sites "
        "within six months, citing the risk that footage could be accessed by Beijing.",
    )
    verdict = scorer.score([document], scorer.embedder.embed([document.for_embedding]))[0]
    assert verdict.relevant and verdict.vendors == [] and "removal" in verdict.actions


def test_a_wire_brief_that_a_sanction_is_weighed_is_caught(scorer):
    document = Document("EU weighs sanctions on Chinese drone maker", "BRUSSELS - EU governments are discussing sanctions on a Chinese drone manufacturer, diplomats said.")
    verdict = scorer.score([document], scorer.embedder.embed([document.for_embedding]))[0]
    assert verdict.relevant and verdict.why["event"]["action"] == "sanctions" and verdict.why["event"]["role"] == "subject"


@pytest.mark.parametrize(
    "title, text",
    [
        ("Hikvision earnings beat forecasts on demand for cameras", "Hikvision reported higher profit as demand for cameras rose overseas, despite US sanctions."),
        ("China orders state firms to stop buying Cisco switches; Huawei to gain", "Beijing told state-owned enterprises to stop buying network switches from Cisco. Huawei is expected to win the business."),
        ("City expands Hikvision camera network, privacy group objects", "The city installed 300 more Hikvision cameras in its centre this year. A privacy group criticised the expansion."),
    ],
)
def test_background_sanctions_the_other_direction_and_adoption_are_not_alerts(scorer, title, text):
    document = Document(title, text)
    assert not scorer.score([document], scorer.embedder.embed([document.for_embedding]))[0].relevant


def test_evidence_of_the_event_never_counts_against_it(scorer):
    from monitor.tags import POSITIVE_FEATURES

    weights = dict(zip(scorer.model.features, scorer.model.coef))
    assert all(weights[name] >= 0 for name in POSITIVE_FEATURES), weights


def test_vendor_product_news_is_not_an_alert(scorer):
    document = Document(
        "Hikvision unveils new 4K camera line with AI search",
        "Hikvision launched a range of 4K cameras with on-device AI search at a trade show in Shenzhen on Tuesday. "
        "The company said the cameras would ship in the second quarter.",
    )
    verdict = scorer.score([document], scorer.embedder.embed([document.for_embedding]))[0]
    assert not verdict.relevant and verdict.score < scorer.threshold


def test_the_trained_model_is_cached_and_retrained_when_the_topic_changes(config, embedder, tmp_path):
    topic = config.topics[0]
    training = read_labelled(ROOT / "eval" / "topic_labelled.jsonl")[::3]
    first = TopicScorer(topic, embedder, training=training, cache_dir=tmp_path)
    assert first.model is not None and len(list(tmp_path.glob("*.json"))) == 1
    again = TopicScorer(topic, embedder, training=training, cache_dir=tmp_path)
    assert again.model.fingerprint == first.model.fingerprint
    changed = TopicScorer(topic.model_copy(update={"description": topic.description + " Also drones."}), embedder, training=training, cache_dir=tmp_path)
    assert changed.model.fingerprint != first.model.fingerprint
    assert len(list(tmp_path.glob("*.json"))) == 2


def test_an_explicit_threshold_overrides_the_learned_one(config, embedder, tmp_path):
    topic = config.topics[0].model_copy(update={"threshold": 0.99})
    training = read_labelled(ROOT / "eval" / "topic_labelled.jsonl")[::3]
    assert TopicScorer(topic, embedder, training=training, cache_dir=tmp_path).threshold == 0.99


def test_a_topic_without_training_scores_by_similarity(config, embedder):
    topic = config.topics[0].model_copy(update={"training": []})
    scorer = TopicScorer(topic, embedder)
    document = Document("UK orders removal of Hikvision cameras from government buildings", "The order covers all departments.")
    verdict = scorer.score([document], embedder.embed([document.for_embedding]))[0]
    assert scorer.model is None and 0 <= verdict.score <= 1 and verdict.why["closest_example"]


def test_eval_command_prints_both_and_json(tmp_path):
    from typer.testing import CliRunner

    from monitor.cli import app

    subset = tmp_path / "subset.jsonl"
    lines = (ROOT / "eval" / "topic_labelled.jsonl").read_text(encoding="utf-8").splitlines()
    subset.write_text("\n".join(lines[::5]) + "\n", encoding="utf-8")
    env = {"MONITOR_CONFIG": str(ROOT / "feeds.yaml"), "MONITOR_MODEL_CACHE": str(tmp_path / "models")}
    result = CliRunner().invoke(app, ["eval", str(subset), "--negatives", str(subset), "--json"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["method"].startswith("model trained") and {"detector", "keyword_baseline", "tags", "real_negatives"} <= set(report)
    assert report["per_kind"]["drones"]["relevant"] > 0 and "flagged" in report["per_kind"]["app_ban"]["detector"]
    assert sum(row["items"] for row in report["reliability"]) == report["items"]
    text = CliRunner().invoke(app, ["eval", str(subset)], env=env).stdout
    assert "keyword baseline" in text and "F1 gain over keywords" in text and "reliability" in text


def test_rescore_updates_stored_verdicts_without_fetching(sessions, config, embedder, tmp_path):
    from monitor.domain import Candidate
    from monitor.embed import to_bytes
    from monitor.rescore import rescore_all
    from monitor.store import repository as repo
    from datetime import datetime, timezone

    now = datetime(2026, 11, 22, tzinfo=timezone.utc)
    documents = [
        Document("Sweden bans Hikvision cameras at government agencies", "The ban takes effect next year."),
        Document("Football: late goal settles derby", "A header in stoppage time."),
    ]
    vectors = embedder.embed([d.for_embedding for d in documents])
    with sessions.begin() as session:
        items = [
            repo.StoredArticle(
                candidate=Candidate(feed_id=None, url=f"https://x.org/{i}", original_url=f"https://x.org/{i}", title=d.title, text=d.text, text_source="page"),
                content_hash=str(i),
                embedding=to_bytes(vectors[i]),
                verdicts=[],
            )
            for i, d in enumerate(documents)
        ]
        repo.add_articles(session, items, now=now)
    strict = config.topics[0].model_copy(update={"training": [], "threshold": 0.0})
    counts = rescore_all(sessions, [TopicScorer(strict, embedder)], embedder, now=now)
    assert counts == {strict.name: (2, 2)}
    with sessions() as session:
        verdicts = list(session.scalars(select(ArticleTopic)))
    assert len(verdicts) == 2 and all(v.relevant for v in verdicts)
    assert "Hikvision" in {vendor for v in verdicts for vendor in v.vendors}
