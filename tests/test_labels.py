"""Learning from the reader: labels on stories and articles win over the model, survive later polls and rescoring,
come out with exports, and `monitor train` folds them into the topic's model; on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
import os
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from monitor.cli import app as cli
from monitor.config import LOOPBACK_NETWORKS
from monitor.demo.server import LocalSite, Reply
from monitor.domain import Candidate, TopicVerdict
from monitor.embed import to_bytes
from monitor.export import write_csv
from monitor.store import feedback, outbox
from monitor.store import repository as repo
from monitor.store.models import Article, ArticleTopic, Delivery, StoryTopic
from monitor.store.views import article_view, export_rows, story_views
from monitor.web.app import create_app

from .conftest import NOW, ROOT, Clock, archive_settings
from .test_pipeline import HTML, RSS, rss

TOPIC = "china-surveillance-bans"
LATER = NOW + timedelta(hours=1)


def verdict(relevant: bool, score: float | None = None) -> TopicVerdict:
    return TopicVerdict(topic=TOPIC, score=score if score is not None else (0.9 if relevant else 0.1), relevant=relevant, vendors=["Hikvision"])


def store_article(sessions, url: str, title: str, *, relevant: bool, story: int | None = None, copy: bool = False, text: str | None = None) -> tuple[int, int, list[str]]:
    """An article stored and placed as the pipeline does: (article id, story id, topics it made relevant)."""
    rng = np.random.default_rng(abs(hash(url)) % 2**32)
    vector = rng.normal(size=384).astype(np.float32)
    item = repo.StoredArticle(
        candidate=Candidate(feed_id=None, url=url, original_url=url, title=title, text=text or f"{title}. The council said so.", text_source="page"),
        content_hash=url,
        embedding=to_bytes(vector / np.linalg.norm(vector)),
        verdicts=[verdict(relevant)],
    )
    with sessions.begin() as session:
        article_id = repo.add_articles(session, [item], now=NOW)[url]
        story_id, newly = repo.place_article(
            session, article_id, story_id=story, duplicate_of_id=None, copy_kind="text" if copy else None,
            tags=item.verdicts[0], verdicts=item.verdicts, now=NOW,
        )  # fmt: skip
    return article_id, story_id, newly


def relevance(sessions, story_id: int) -> tuple[bool, dict[int, bool]]:
    """The story's relevance and each of its articles'."""
    with sessions() as session:
        view = session.get(StoryTopic, (story_id, TOPIC))
        articles = {row.article_id: row.relevant for row in session.scalars(select(ArticleTopic).join(Article, Article.id == ArticleTopic.article_id).where(Article.story_id == story_id))}
        return view.relevant, articles


def owed(sessions, story_id: int) -> list[str]:
    with sessions() as session:
        return [d.status for d in session.scalars(select(Delivery).where(Delivery.story_id == story_id))]


def label(sessions, *, relevant: bool, story: int | None = None, article: int | None = None, by: str = "alice", note: str = ""):
    with sessions.begin() as session:
        target = feedback.article_target(session, article_id=article) if article else feedback.story_target(session, story)
        return feedback.add_label(session, target, topic=TOPIC, relevant=relevant, by=by, note=note, now=LATER)


def test_a_story_labelled_not_relevant_goes_off_with_its_articles_and_owes_no_alert(sessions):
    first, story, newly = store_article(sessions, "https://a.example/1", "Council bans Hikvision cameras", relevant=True)
    second, _, _ = store_article(sessions, "https://b.example/1", "Council bans Hikvision cameras, say reports", relevant=True, story=story)
    assert newly == [TOPIC]
    with sessions.begin() as session:
        for channel, route in ((outbox.SLACK, "hook"), (outbox.DIGEST, outbox.DIGEST), (outbox.SLACK, "sent-route")):
            outbox.owe(session, channel=channel, route=route, topic=TOPIC, story_id=story, due_at=NOW, held=False, now=NOW)
        sent = session.scalar(select(Delivery.id).where(Delivery.route == "sent-route"))
        outbox.mark_sent(session, [sent], now=NOW)

    stored, settled = label(sessions, relevant=False, story=story, note="an opinion piece")
    assert (stored.by, stored.relevant, stored.story_id, stored.article_id, stored.at) == ("alice", False, story, None, LATER)
    assert settled == feedback.Settled(turned_on=0, turned_off=1, withdrawn=2)
    assert relevance(sessions, story) == (False, {first: False, second: False})
    assert owed(sessions, story) == ["sent"]  # what was sent stays sent; nothing more is owed
    with sessions() as session:
        view = story_views(session, [story], topic=TOPIC)[0]
        assert view.label == stored and not view.relevant and view.relevant_since is None and view.score == 0.9  # the model's score stays
        assert article_view(session, second, topic=TOPIC).label == stored  # a story's label speaks for its articles

    third, same, newly = store_article(sessions, "https://c.example/1", "Council bans Hikvision cameras (update)", relevant=True, story=story)
    assert same == story and newly == []  # a later report joining the story makes it relevant again: no
    assert relevance(sessions, story) == (False, {first: False, second: False, third: False})
    with sessions.begin() as session:
        repo.save_verdicts(session, first, [verdict(True)], now=LATER)  # a rescore whose model still finds it relevant
        assert feedback.settle_stories(session, [story], now=LATER) == feedback.Settled()
    assert relevance(sessions, story)[0] is False and owed(sessions, story) == ["sent"]


def test_an_article_label_wins_for_that_article_and_the_story_follows_its_articles(sessions):
    first, story, _ = store_article(sessions, "https://a.example/2", "Hikvision cameras pulled from schools", relevant=True)
    second, _, _ = store_article(sessions, "https://b.example/2", "Schools pull Hikvision cameras", relevant=True, story=story)
    stored, _ = label(sessions, relevant=False, article=first, by=" bob\x00", note="\x00")
    assert (stored.by, stored.note) == ("bob", "")  # PostgreSQL's text holds no NUL
    assert relevance(sessions, story) == (True, {first: False, second: True})  # another article still holds the story
    _, settled = label(sessions, relevant=False, article=second, by="bob")
    assert settled.turned_off == 1 and relevance(sessions, story) == (False, {first: False, second: False})

    _, settled = label(sessions, relevant=True, story=story, by="carol")  # the newest word counts: the story's, here
    assert settled.turned_on == 1
    assert relevance(sessions, story) == (True, {first: False, second: False})  # the articles keep their own labels

    quiet, other, _ = store_article(sessions, "https://a.example/3", "Trade fair opens in Shenzhen", relevant=False)
    _, settled = label(sessions, relevant=True, article=quiet)
    assert settled.turned_on == 1 and relevance(sessions, other) == (True, {quiet: True})  # no alert is owed for it
    assert owed(sessions, other) == []


def test_labels_become_training_items_once_folded_and_come_out_with_the_export(sessions):
    first, story, _ = store_article(sessions, "https://a.example/4", "Army removes Dahua cameras", relevant=True)
    copy, _, _ = store_article(sessions, "https://copy.example/4", "Army removes Dahua cameras", relevant=True, story=story, copy=True)
    other, _, _ = store_article(sessions, "https://b.example/4", "Army to remove Dahua cameras from bases", relevant=True, story=story)
    label(sessions, relevant=False, story=story)
    label(sessions, relevant=True, article=other, by="dan")
    with sessions() as session:
        assert feedback.training_items(session, topic=TOPIC) == []  # nothing folded yet
    with sessions.begin() as session:
        assert feedback.fold(session, topic=TOPIC, now=LATER) == 2
    with sessions() as session:
        items = {item.key: item.relevant for item in feedback.training_items(session, topic=TOPIC)}
        rows = {row["url"]: row for row in export_rows(session, topic=TOPIC)}
    assert items == {"https://a.example/4": False, "https://b.example/4": True}  # the same-text copy adds nothing
    assert rows["https://a.example/4"]["label"] == {"relevant": False, "by": "alice", "at": LATER.isoformat(), "note": "", "on": "story", "folded": True}
    assert rows["https://b.example/4"]["label"]["by"] == "dan" and rows["https://b.example/4"]["label"]["on"] == "article"
    assert rows["https://copy.example/4"]["relevant"] is False and first != copy
    table = io.StringIO()
    write_csv(rows.values(), table)
    cells = {row["url"]: row["label"] for row in csv.DictReader(io.StringIO(table.getvalue()))}
    assert json.loads(cells["https://b.example/4"])["by"] == "dan"


class NoModel:
    """The archive's pages need no meaning search here: nothing is embedded."""

    dimension = 384

    def embed(self, texts):
        raise AssertionError("no embedding expected")


@pytest.fixture
def archive(sessions, config, tmp_path, database_url):
    """Two stories, one relevant, the archive's app over them, and its settings."""
    wrong, story, _ = store_article(sessions, "https://a.example/5", "Shop sells Hikvision cameras cheaply", relevant=True)
    right, other, _ = store_article(sessions, "https://b.example/5", "Ministry bans Dahua cameras", relevant=True)
    return {"story": story, "article": wrong, "other": other, "right": right, "settings": archive_settings(tmp_path, database_url)}


def client_of(sessions, config, settings, **changes) -> TestClient:
    app = create_app(sessions=sessions, embedder=NoModel(), config=config, settings=settings.model_copy(update=changes), clock=Clock(LATER))
    return TestClient(app, follow_redirects=False)


SAME_SITE = {"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin", "Content-Type": "application/x-www-form-urlencoded"}


def test_the_buttons_label_a_story_and_the_page_says_so(sessions, config, archive):
    story = archive["story"]
    with client_of(sessions, config, archive["settings"]) as client:
        page = client.get(f"/stories/{story}").text
        assert f'action="/stories/{story}/label"' in page and 'value="not-relevant"' in page and 'value="relevant"' in page
        answer = client.post(f"/stories/{story}/label", content="verdict=not-relevant&by=Alice&note=a+shop%27s+advert&topic=", headers=SAME_SITE)
        assert answer.status_code == 303 and answer.headers["location"] == f"/stories/{story}"
        page = client.get(f"/stories/{story}").text
        assert "Marked <strong>not relevant</strong> by Alice" in page and "a shop&#39;s advert" in page
        assert "not relevant to" in page
        found = client.get("/api/search").json()
        assert [hit["story_id"] for hit in found["results"]] == [archive["other"]]  # gone from the relevant stories

        answer = client.post(f"/articles/{archive['right']}/label", content="verdict=not-relevant", headers=SAME_SITE)
        assert answer.status_code == 303
        assert "Marked <strong>not relevant</strong> by unknown" in client.get(f"/articles/{archive['right']}").text
        assert client.post(f"/stories/{story}/label", content="verdict=maybe", headers=SAME_SITE).status_code == 422
        assert client.post("/stories/999999/label", content="verdict=relevant", headers=SAME_SITE).status_code == 404


def test_a_cross_site_post_is_refused(sessions, config, archive):
    story = archive["story"]
    form = "verdict=not-relevant&by=mallory"
    with client_of(sessions, config, archive["settings"]) as client:
        for headers in (
            {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"},
            {"Sec-Fetch-Site": "same-site", "Origin": "https://evil.testserver"},
            {"Origin": "https://evil.example"},  # a browser without Fetch Metadata still names the page's origin
            {"Origin": "null"},  # a sandboxed frame or a redirect
        ):
            answer = client.post(f"/stories/{story}/label", content=form, headers={**headers, "Content-Type": "application/x-www-form-urlencoded"})
            assert answer.status_code == 403, headers
            assert "own pages" in answer.text
        api = client.post("/api/labels", json={"story_id": story, "relevant": False}, headers={"Origin": "https://evil.example"})
        assert api.status_code == 403 and api.json()["detail"].startswith("refused")
        assert client.get(f"/stories/{story}", headers={"Sec-Fetch-Site": "cross-site"}).status_code == 200  # reading is fine
    with sessions() as session:
        assert feedback.Labels.of_topic(session, topic=TOPIC) == feedback.Labels({}, {})
    assert relevance(sessions, story)[0] is True


def test_labels_need_the_token_when_one_is_set(sessions, config, archive):
    story = archive["story"]
    with client_of(sessions, config, archive["settings"], api_token="s3cret") as client:
        assert client.post("/api/labels", json={"story_id": story, "relevant": False}).status_code == 401
        assert client.post(f"/stories/{story}/label", content="verdict=not-relevant", headers=SAME_SITE).status_code == 401
        assert relevance(sessions, story)[0] is True
        client.get(f"/stories/{story}?token=s3cret")  # the browser brings it once; the cookie keeps it
        assert client.post(f"/stories/{story}/label", content="verdict=not-relevant", headers=SAME_SITE).status_code == 303
        answer = client.post(
            "/api/labels", json={"article_id": archive["right"], "relevant": False, "by": "script"}, headers={"Authorization": "Bearer s3cret"}
        )
        assert answer.status_code == 201
    assert relevance(sessions, story)[0] is False and relevance(sessions, archive["other"])[0] is False


def test_the_label_api_is_documented_and_checks_its_input(sessions, config, archive):
    with client_of(sessions, config, archive["settings"]) as client:
        schema = client.get("/openapi.json").json()["paths"]["/api/labels"]["post"]
        assert {"201", "403", "404", "422"} <= set(schema["responses"])
        answer = client.post("/api/labels", json={"article_id": archive["article"], "relevant": False, "by": "bob", "note": "advert"})
        assert answer.status_code == 201, answer.text
        body = answer.json()
        assert body["label"]["by"] == "bob" and body["label"]["article_id"] == archive["article"] and datetime.fromisoformat(body["label"]["at"]) == LATER
        assert body["story_id"] == archive["story"] and body["story_relevant"] is False
        both = client.post("/api/labels", json={"article_id": 1, "story_id": 1, "relevant": True})
        assert both.status_code == 422 and "exactly one" in both.json()["detail"]
        assert client.post("/api/labels", json={"story_id": 999999, "relevant": True}).status_code == 404
        assert client.post("/api/labels", json={"story_id": archive["story"], "relevant": True, "topic": "nope"}).status_code == 422


WRONG = "Council orders Hikvision cameras removed from town hall over security fears"
RIGHT = "Canada bans Dahua drones from federal agencies"
BAKERY = "Local bakery wins regional prize"
BODIES = {
    WRONG: "The borough council voted on Tuesday to take down the Hikvision cameras at the town hall entrance. "
    "Councillors cited security concerns about the Chinese manufacturer and asked officers to find a replacement supplier.",
    RIGHT: "Ottawa has barred federal departments from buying or flying drones made by Dahua, the public safety minister "
    "announced, after a review found the devices could send flight data to servers in China. Existing fleets will be grounded.",
    BAKERY: "A family bakery on the high street won first prize for its sourdough at the regional food awards on Saturday. "
    "The judges praised the crust and said the loaf was the best they had tasted this year.",
}


def article(title: str, body: str | None = None) -> bytes:
    """An article page of its own words (pages alike in all but the title would fold into one story)."""
    paragraphs = "".join(f"<p>{sentence}.</p>" for sentence in (body or BODIES[title]).split(". ") if sentence)
    return f"<html><head><title>{title}</title></head><body><article><h1>{title}</h1>{paragraphs}</article></body></html>".encode()


def news(site: LocalSite, items: list[tuple[str, str]]) -> None:
    """The outlet's feed, published an hour before now: the command line runs on the machine's clock, and a story's
    window (7 days) would drop news dated from the tests' fixed clock once a week had passed."""
    published = datetime.now(timezone.utc) - timedelta(hours=1)
    site.routes["/news.xml"] = Reply(200, rss([(title, site.url(path), title) for title, path in items], published=published), RSS)


@pytest.fixture
def reader_site(tmp_path, model_cache, database_url):
    """A local outlet with a story the model flags and a reader calls wrong, a Slack webhook, and the CLI's settings."""
    with LocalSite() as site:
        site.routes.update({
            "/wrong.html": Reply(200, article(WRONG), HTML),
            "/right.html": Reply(200, article(RIGHT), HTML),
            "/bakery.html": Reply(200, article(BAKERY), HTML),
            "/hook": Reply(200, b"ok", {"Content-Type": "text/plain"}),
        })  # fmt: skip
        news(site, [(WRONG, "/wrong.html"), (RIGHT, "/right.html"), (BAKERY, "/bakery.html")])
        topics = (ROOT / "feeds.yaml").read_text(encoding="utf-8").split("\ntopics:\n", 1)[1]
        config = tmp_path / "feeds.yaml"
        config.write_text(
            f"feeds:\n  - {{name: Local News, url: '{site.url('/news.xml')}', interval: 1h}}\n"
            "topics:\n" + topics.replace("eval/", f"{ROOT / 'eval'}/").replace("../shared/", f"{ROOT.parent / 'shared'}/"),
            encoding="utf-8",
        )
        env = {
            "MONITOR_CONFIG": str(config),
            "MONITOR_DATABASE_URL": database_url,
            "MONITOR_HOST_DELAY": "0",
            "MONITOR_ALLOWED_NETWORKS": ",".join(LOOPBACK_NETWORKS),
            "MONITOR_MODEL_CACHE": str(model_cache),
            "MONITOR_SLACK_WEBHOOK_URL": site.url("/hook"),
            "MONITOR_API_TOKEN": "",
        }
        yield site, env


def monitor(env: dict, *args: str) -> str:
    result = CliRunner().invoke(cli, list(args), env={**os.environ, **env}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def exported(env: dict, *args: str) -> dict[str, dict]:
    return {row["title"]: row for row in map(json.loads, monitor(env, "export", *args).splitlines())}


def alerted(site: LocalSite) -> str:
    return " ".join(request.body.decode() for request in site.requests if request.path == "/hook")


def test_a_story_labelled_not_relevant_is_turned_off_by_train_and_rescore_and_stays_off(reader_site):
    site, env = reader_site
    monitor(env, "poll")
    rows = exported(env)
    assert rows[WRONG]["relevant"] is True and rows[RIGHT]["relevant"] is True and rows[BAKERY]["relevant"] is False
    assert WRONG in alerted(site)  # the model flagged it, and Slack heard of it before the reader did
    story = rows[WRONG]["story_id"]

    said = monitor(env, "label", f"http://127.0.0.1:8000/stories/{story}", "--not-relevant", "--by", "alice", "--note", "a council's own news")
    assert f"story {story} labelled not relevant to {TOPIC} by alice" in said
    trained = monitor(env, "train")
    assert "1 from readers' labels (0 before)" in trained and "before" in trained and "after" in trained
    assert "agrees with: before 0 of 1" in trained  # the model in use had it wrong
    rescored = monitor(env, "rescore")
    assert "3 articles scored, 1 relevant" in rescored

    rows = exported(env)
    assert rows[WRONG]["relevant"] is False and rows[RIGHT]["relevant"] is True
    assert rows[WRONG]["label"] == {**rows[WRONG]["label"], "relevant": False, "by": "alice", "on": "story", "folded": True, "note": "a council's own news"}
    assert WRONG not in exported(env, "--relevant-only")
    monitor(env, "label", site.url("/bakery.html"), "--not-relevant")  # an article by its own link
    assert exported(env)[BAKERY]["label"]["on"] == "article"

    before = len(alerted(site))
    edited = WRONG + ", council confirms"
    site.routes["/wrong.html"] = Reply(200, article(edited, BODIES[WRONG]), HTML)  # the outlet edits its headline: read again
    site.routes["/wrong-copy.html"] = Reply(200, article(WRONG), HTML)  # a second outlet's copy joins the story
    news(site, [(edited, "/wrong.html"), (WRONG, "/wrong-copy.html"), (RIGHT, "/right.html"), (BAKERY, "/bakery.html")])
    monitor(env, "poll")
    rows = {row["url"]: row for row in map(json.loads, monitor(env, "export").splitlines())}
    again = [rows[site.url(path)] for path in ("/wrong.html", "/wrong-copy.html")]
    assert [(row["title"], row["story_id"], row["relevant"]) for row in again] == [(edited, story, False), (WRONG, story, False)]
    assert len(alerted(site)) == before  # no alert for it, then or now
    assert "0 became relevant" in monitor(env, "rescore")
    assert all(not row["relevant"] for row in map(json.loads, monitor(env, "export").splitlines()) if row["story_id"] == story)


def test_the_topic_model_cache_key_names_the_embedding_backend_and_tokens(config, tmp_path):
    """A model trained on one backend's vectors is not reused for another's (nor for other token counts)."""
    from monitor.classify import TopicScorer, read_labelled
    from monitor.embed import BACKENDS, SentenceTransformerEmbedder

    spec = config.topics[0]
    training = read_labelled(spec.training[0])[:20]

    def key(**embedding) -> str:
        return TopicScorer(spec, SentenceTransformerEmbedder(cache_dir=tmp_path, **embedding), training=training, cache_dir=tmp_path).key

    keys = {backend: key(backend=backend) for backend in BACKENDS}
    assert len(set(keys.values())) == len(BACKENDS)
    assert key(backend="torch", max_tokens=128) != keys["torch"] and key(backend="torch") == keys["torch"]
