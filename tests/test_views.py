"""Stories as the outputs show them: sources in order, the evidence of the best article, a lead without the headline."""

from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone
from xml.etree import ElementTree

from monitor.export import write_atom
from monitor.labels import lead, story_start
from monitor.store.models import Article, ArticleTopic, Feed, Story, StoryTopic
from monitor.store.views import story_views

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=timezone.utc)
TITLE = "Canada orders Hikvision cameras stripped from federal buildings"


def test_lead_leaves_out_a_repeated_headline_and_its_section_name():
    text = f"World {TITLE} Ottawa has given departments 18 months. The order follows a review."
    assert lead(text, title=TITLE) == "Ottawa has given departments 18 months. The order follows a review."
    assert lead(f"{TITLE}: Ottawa acts.", title=TITLE) == "Ottawa acts."
    kept = f"Ottawa has given departments 18 months, a long preamble before anything else, as {TITLE} says."
    assert lead(kept, title=TITLE) == kept  # the headline deep in the text is not an opening
    assert lead("One. Two. " + "Three is long. " * 40, 20) == "One. Two."


def test_a_section_name_line_goes_even_when_the_headline_differs_and_words_are_never_cut():
    assert lead("World\nOttawa has given departments 18 months.", title="Some other headline") == "Ottawa has given departments 18 months."
    assert lead("Analysis\n\nOttawa acts.") == "Ottawa acts."
    first_line = "Ottawa has given departments 18 months to act.\nThe order follows a review."
    assert lead(first_line, title="x") == first_line.replace("\n", " ")  # "x" inside "text" is no headline
    assert story_start("Canada\n") == 0  # a line alone is the text, not a section name


def test_the_exported_atom_summary_starts_where_the_story_starts():
    stream = io.StringIO()
    write_atom([{"url": "https://x.example/1", "title": TITLE, "published": None, "text": f"World\n{TITLE}\nOttawa has given departments 18 months."}], stream)
    entry = ElementTree.fromstring(stream.getvalue().split("\n", 1)[1]).find("{http://www.w3.org/2005/Atom}entry")
    assert entry.findtext("{http://www.w3.org/2005/Atom}summary") == "Ottawa has given departments 18 months."


def test_story_views_list_sources_earliest_first_with_the_best_evidence(sessions):
    with sessions.begin() as session:
        session.add(Feed(name="Wire", url="https://wire.example/rss", interval_seconds=3600, error_count=0, created_at=T0))
        story = Story(
            title=TITLE, url="https://a.example/1", first_seen_at=T0, last_updated_at=T0, published_at=T0,
            article_count=2, vendors=["Hikvision"], countries=["CA"], actions=["removal"],
        )
        session.add(story)
        session.flush()
        session.add(StoryTopic(story_id=story.id, topic="t", score=0.9, relevant=True, relevant_since=T0))
        for n, (site, minutes, score) in enumerate([("Later Daily", 60, 0.95), (None, 0, 0.8)]):
            article = Article(
                url=f"https://{'b' if site else 'a'}.example/1", original_url="x", title=TITLE, site_name=site, feed_id=1,
                text=f"News {TITLE} Ottawa has given departments 18 months ({n}).", text_source="page", content_hash=str(n),
                fetched_at=T0, published_at=T0 + timedelta(minutes=minutes), story_id=story.id,
            )
            session.add(article)
            session.flush()
            session.add(ArticleTopic(article_id=article.id, topic="t", score=score, relevant=True, why={"n": n}, scored_at=T0))
        story_id = story.id
    with sessions() as session:
        [view] = story_views(session, [story_id, 999], topic="t")
    assert [s.outlet for s in view.sources] == ["Wire", "Later Daily"]  # feed name when the page gave none; earliest first
    assert view.outlet == "Wire" and view.relevant and view.score == 0.9
    assert view.why == {"n": 0}  # the best-scoring article's evidence
    assert view.summary == "Ottawa has given departments 18 months (0)."
