"""Word search ranks within the archive's most recent slice that holds enough matches: work bounded by what is
published in a month, not by what the archive keeps; a total that says "at least" when older matches went uncounted."""

from __future__ import annotations

import hashlib
from datetime import date, datetime, timedelta, timezone

import numpy as np
from fastapi.testclient import TestClient

from monitor.domain import Candidate, TopicVerdict
from monitor.embed import to_bytes
from monitor.store import repository as repo
from monitor.store.search import SearchQuery, VectorIndex, search
from monitor.web.app import create_app

from .conftest import archive_settings

TOPIC = "china-surveillance-bans"
START = datetime(2025, 1, 1, 12, tzinfo=timezone.utc)
EVERY = timedelta(days=10)
STORIES = 60  # one each 10 days: 590 days; 1 in the last 7 days, 4 in 30, 13 in 120, 37 in 365


def day(n: int) -> date:
    return (START + n * EVERY).date()


def stored(sessions) -> list[int]:
    """STORIES stories, one article each, fetched (and published) 10 days apart, oldest first; all name Hikvision,
    the oldest alone names Uniview. Returns their story ids, oldest first."""
    vector = to_bytes(np.ones(8, dtype=np.float32) / np.sqrt(8))
    ids = []
    for n in range(STORIES):
        when = START + n * EVERY
        url = f"https://x.example/{n}"
        text = f"Council {n} removed its Hikvision cameras." + (" Uniview too." if n == 0 else "") + " Hikvision said nothing." * (n % 3)
        verdict = TopicVerdict(topic=TOPIC, score=0.9, relevant=True, vendors=["Hikvision"])
        item = repo.StoredArticle(
            Candidate(feed_id=None, url=url, original_url=url, title=f"Cameras removed, number {n}", text=text, text_source="page", published=when),
            hashlib.sha256(text.encode()).hexdigest(),
            vector,
            [verdict],
        )
        with sessions.begin() as session:
            article_id = repo.add_articles(session, [item], now=when)[url]
            ids.append(repo.place_article(session, article_id, story_id=None, duplicate_of_id=None, copy_kind=None, tags=verdict, verdicts=[verdict], now=when)[0])
    return ids


def words(sessions, q: str, **fields):
    with sessions() as session:
        return search(session, SearchQuery(q=q, mode="words", **fields), vectors=VectorIndex(), query_vector=None)


def test_a_common_word_is_ranked_in_the_last_month_and_its_total_is_at_least(sessions):
    ids = stored(sessions)
    page = words(sessions, "Hikvision", per_page=2)
    assert page.total == 4 and not page.total_exact  # the last 30 days hold enough for the page; 60 match in all
    assert {hit.story_id for hit in page.results} <= set(ids[-4:])
    third = words(sessions, "Hikvision", per_page=2, page=3)  # 6 wanted: widened to 120 days
    assert third.total == 13 and not third.total_exact and {hit.story_id for hit in third.results} <= set(ids[-13:])
    newest = words(sessions, "Hikvision", per_page=3, sort="newest")
    assert [hit.story_id for hit in newest.results] == ids[:-4:-1]  # the newest are the newest slice's: exact
    everything = words(sessions, "Hikvision", per_page=100)
    assert everything.total == STORIES and everything.total_exact and len(everything.results) == STORIES


def test_pages_continue_each_other_as_the_slice_widens(sessions):
    ids = stored(sessions)
    pages = [words(sessions, "Hikvision", per_page=3, page=n) for n in range(1, 21)]
    found = [hit.story_id for page in pages for hit in page.results]
    assert sorted(found) == sorted(ids)  # each story once over the pages, none lost between slices
    assert set(found[:4]) == set(ids[-4:]) and set(found[4:13]) == set(ids[-13:-4])  # the last month's best first, then the rest of 120 days
    beyond = words(sessions, "Hikvision", per_page=3, page=21)
    assert beyond.results == [] and beyond.total == STORIES and beyond.total_exact


def test_a_rare_word_widens_to_the_whole_archive_and_dates_bound_the_slice(sessions):
    ids = stored(sessions)
    rare = words(sessions, "Uniview")
    assert [hit.story_id for hit in rare.results] == [ids[0]] and rare.total == 1 and rare.total_exact
    dated = words(sessions, "Hikvision", since=day(10), until=day(20), per_page=100)
    assert sorted(hit.story_id for hit in dated.results) == ids[10:21] and dated.total == 11 and dated.total_exact
    assert words(sessions, "Hikvision", since=day(70)).total == 0
    week = words(sessions, "Hikvision", until=day(30), per_page=1)  # the windows end at until: its last week answers
    assert [hit.story_id for hit in week.results] == [ids[30]] and week.total == 1 and not week.total_exact


def test_the_api_and_the_page_say_at_least(sessions, database_url, tmp_path, embedder, config):
    stored(sessions)
    client = TestClient(create_app(sessions=sessions, embedder=embedder, config=config, settings=archive_settings(tmp_path, database_url)))
    answer = client.get("/api/search", params={"q": "Hikvision", "mode": "words", "per_page": 2}).json()
    assert answer["total"] == 4 and answer["total_exact"] is False and answer["pages"] == 3  # one more page to widen into
    exact = client.get("/api/search", params={"q": "Uniview", "mode": "words"}).json()
    assert exact["total"] == 1 and exact["total_exact"] is True and exact["pages"] == 1
    html = client.get("/", params={"q": "Hikvision", "mode": "words", "per_page": 2}).text
    assert "at least 4" in html
