"""The digest: ranking, grouping, counts, both parts, links, escaping, the empty day and the subject template."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from email import policy
from email.parser import BytesParser
from html.parser import HTMLParser

import pytest

from monitor.domain import Source, StoryView, check_subject_template
from monitor.notify.digest import build_digest, group_stories, importance, rank_stories, to_email

NOW = datetime(2026, 11, 22, 7, 0, tzinfo=timezone.utc)
DAY = date(2026, 11, 22)
TOPIC = "china-surveillance-bans"


def make(story_id: int, title: str, *, score: float, outlets: int = 1, hours_ago: float = 6, countries=("US",), actions=("ban",), **changes) -> StoryView:
    published = NOW - timedelta(hours=hours_ago)
    sources = [
        Source(
            article_id=story_id * 100 + i,
            outlet=f"Outlet {story_id}-{i}",
            title=f"{title} ({i})" if i else title,
            url=f"https://n{i}.example/{story_id}/{i}?a=1&b=2",
            published=published + timedelta(minutes=10 * i),
        )
        for i in range(outlets)
    ]
    view = StoryView(
        id=story_id,
        topic=TOPIC,
        title=title,
        url=sources[0].url,
        outlet=sources[0].outlet,
        published=published,
        first_seen=published,
        relevant_since=published,
        score=score,
        relevant=True,
        vendors=["Hikvision"],
        countries=list(countries),
        actions=list(actions),
        why={"action_phrases": ["banned"], "vendor_phrases": ["Hikvision"], "closest_example": "example 2: The FCC banned…"},
        summary=f"Summary of story {story_id}. " + "It goes on for a while. " * 20,
        sources=sources,
    )
    return replace(view, **changes)


STORIES = [
    make(1, "FCC extends ban to camera modules", score=0.99, outlets=4, countries=("US",), actions=("ban",)),
    make(2, "Canada strips Hikvision cameras", score=0.97, outlets=2, countries=("CA",), actions=("removal",)),
    make(3, "Australia grounds DJI drones", score=0.97, outlets=1, countries=("AU",), actions=("ban",)),
    make(4, "Aarhus stops buying Chinese cameras", score=0.80, outlets=1, countries=("DK",), actions=("procurement_restriction",)),
    make(5, "Hikvision profit climbs", score=0.70, outlets=1, countries=(), actions=()),
]


class Links(HTMLParser):
    def __init__(self, html: str):
        super().__init__()
        self.hrefs: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.hrefs.append(dict(attrs)["href"])


def test_rank_by_score_then_outlets_then_recency():
    fresh = make(6, "Fresh", score=0.97, outlets=1, hours_ago=1)
    ranked = rank_stories([*STORIES, fresh], now=NOW)
    # 2 has two outlets (+0.1), 6 is fresher than 3 at the same score
    assert [story.id for story in ranked] == [1, 2, 6, 3, 4, 5]
    assert importance(STORIES[0], now=NOW) == pytest.approx(0.99 + 0.1 * 2 + 0.1 * 2 ** (-6 / 24))


def test_digest_counts_groups_and_orders_the_stories():
    digest = build_digest(STORIES, day=DAY, topic=TOPIC, now=NOW)
    assert digest.subject == "5 stories on China surveillance bans, 22 Nov 2026"  # no title given: the name in words
    one = build_digest(STORIES[:1], day=DAY, topic=TOPIC, now=NOW, title="Bans on Chinese surveillance technology")
    assert one.subject == "1 story on Bans on Chinese surveillance technology, 22 Nov 2026"
    assert (digest.stories, digest.articles, digest.countries) == (5, 9, 4)
    assert "5 stories, 9 articles, 4 countries" in digest.text and "5 stories, 9 articles, 4 countries" in digest.html
    headings = re.findall(r"^([A-Z][A-Z ]+) \((\d+)\)$", digest.text, re.M)
    assert headings == [("BANS", "2"), ("REMOVALS", "1"), ("PROCUREMENT RESTRICTIONS", "1"), ("OTHER STORIES", "1")]
    numbered = re.findall(r"^(\d+)\. (.+)$", digest.text, re.M)
    assert [title for _, title in numbered] == [STORIES[i].title for i in (0, 2, 1, 3, 4)]
    html_order = [digest.html.index(STORIES[i].title) for i in (0, 2, 1, 3, 4)]
    assert html_order == sorted(html_order)


def test_sections_go_by_weight_not_by_their_best_story():
    call = make(8, "MPs call for a ban on Hikvision", score=0.99, outlets=3, actions=("call_for_ban",))
    reaction = make(9, "Hikvision answers its critics", score=0.99, actions=("reaction",))
    investigation = make(10, "Regulator opens a probe into camera makers", score=0.5, actions=("investigation",))
    digest = build_digest([call, reaction, investigation, *STORIES], day=DAY, topic=TOPIC, now=NOW)
    headings = [heading for heading, _ in re.findall(r"^([A-Z][A-Z ]+) \((\d+)\)$", digest.text, re.M)]
    assert headings == ["BANS", "REMOVALS", "PROCUREMENT RESTRICTIONS", "INVESTIGATIONS", "CALLS FOR BANS", "REACTIONS", "OTHER STORIES"]
    assert [heading for heading, _ in group_stories(rank_stories([reaction, call, *STORIES], now=NOW))][-3:] == ["Calls for bans", "Reactions", "Other stories"]


def test_headlines_come_first_and_one_source_is_not_listed_again():
    digest = build_digest(STORIES, day=DAY, topic=TOPIC, now=NOW, title="Bans on Chinese surveillance technology")
    brief = digest.text.split("In brief:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert brief == [f"{n:2d}. {STORIES[i].title}" for n, i in enumerate((0, 2, 1, 3, 4), 1)]
    assert digest.html.index("In brief") < digest.html.index(">Bans <")
    assert "Daily digest · Bans on Chinese surveillance technology" in digest.html
    single = build_digest([STORIES[2]], day=DAY, topic=TOPIC, now=NOW)
    assert "Source:" not in single.html and "Sources:" not in single.text and "In brief" not in single.text
    assert "4 sources:" in digest.html and digest.text.count("   Sources:") == 2  # stories 1 and 2 have several


def test_every_story_and_source_is_linked_in_both_parts():
    digest = build_digest(STORIES, day=DAY, topic=TOPIC, now=NOW, archive_url="https://monitor.example/")
    hrefs = Links(digest.html).hrefs
    for story in STORIES:
        assert story.url in hrefs and f"https://monitor.example/stories/{story.id}" in hrefs
        for source in story.sources:
            assert source.url in hrefs, source.url
            assert source.url in digest.text and source.outlet in digest.html
    assert "https://monitor.example" in hrefs
    assert "In the archive: https://monitor.example/stories/1" in digest.text


def test_tags_summary_and_evidence_are_readable():
    digest = build_digest(STORIES, day=DAY, topic=TOPIC, now=NOW)
    assert "🇺🇸 United States" in digest.html and "🇩🇰 Denmark" in digest.text
    assert "procurement restriction" in digest.html and "procurement_restriction" not in digest.html + digest.text
    assert "Summary of story 1. It goes on for a while." in digest.html
    summary = re.search(r"<p [^>]*>(Summary of story 1\..*?)</p>", digest.html, re.S).group(1)
    assert len(summary) <= 220 and summary.endswith("…")
    assert "Matched “banned” about Hikvision" in digest.text


def test_values_are_escaped_in_html_and_left_alone_in_text():
    evil = make(7, "<script>alert(1)</script> & Huawei", score=0.9, outlet="A<b>", url='https://x.example/"><script>')
    digest = build_digest([evil], day=DAY, topic=TOPIC, now=NOW)
    assert "<script>" not in digest.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; Huawei" in digest.html
    assert 'href="https://x.example/&#34;&gt;&lt;script&gt;"' in digest.html
    assert "<script>alert(1)</script> & Huawei" in digest.text


def test_times_are_shown_in_the_digest_time_zone():
    digest = build_digest(STORIES[:1], day=DAY, topic=TOPIC, now=NOW, timezone="Australia/Sydney")
    assert "22 Nov 12:00" in digest.text  # 01:00 UTC is 12:00 in Sydney (summer time)
    assert "Times are Australia/Sydney" in digest.html
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Base'"):
        build_digest(STORIES, day=DAY, topic=TOPIC, now=NOW, timezone="Mars/Base")


def test_an_empty_day_is_a_short_nothing_new_email():
    digest = build_digest([], day=DAY, topic=TOPIC, now=NOW)
    assert (digest.stories, digest.articles, digest.countries) == (0, 0, 0)
    assert digest.subject == "0 stories on China surveillance bans, 22 Nov 2026"
    assert "Nothing new on China surveillance bans on Sunday 22 November 2026." in digest.text
    assert "Nothing new on <strong>China surveillance bans</strong>" in digest.html
    assert len(digest.text.splitlines()) < 10


def test_subject_template_fields_and_errors():
    digest = build_digest(STORIES, day=DAY, topic=TOPIC, now=NOW, subject_template="[{topic}] {count} stories, {articles} articles, {countries} countries, {day:%d %b}")
    assert digest.subject == "[China surveillance bans] 5 stories, 9 articles, 4 countries, 22 Nov"
    assert check_subject_template("{count} on {day}") == "{count} on {day}"
    with pytest.raises(ValueError, match=r"unknown field \{titles\}; use \{count\}, \{stories\}, \{topic\}, \{day\}"):
        check_subject_template("{titles} new")
    with pytest.raises(ValueError, match=r"unknown field \{\}"):
        check_subject_template("{} new")
    with pytest.raises(ValueError, match=r"unknown field \{topic.__class__\}"):
        check_subject_template("{topic.__class__}")
    with pytest.raises(ValueError, match="Single '}'|unmatched|expected '}'"):
        check_subject_template("{count new")
    with pytest.raises(ValueError, match="literal braces"):
        check_subject_template("count} new")
    with pytest.raises(ValueError, match="subject template"):
        check_subject_template("{count:%Y}")
    with pytest.raises(ValueError, match="unknown field"):
        build_digest(STORIES, day=DAY, topic=TOPIC, now=NOW, subject_template="{nope}")


def test_to_email_is_multipart_alternative_text_first():
    digest = build_digest(STORIES, day=DAY, topic=TOPIC, now=NOW)
    message = to_email(digest, sender="Monitor <monitor@example.org>", recipients=["a@example.org", "b@example.org"], date=NOW)
    parsed = BytesParser(policy=policy.default).parsebytes(message.as_bytes())
    assert parsed.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in parsed.iter_parts()] == ["text/plain", "text/html"]
    assert all(part.get_content_charset() == "utf-8" for part in parsed.iter_parts())
    assert parsed["Subject"] == digest.subject and parsed["To"] == "a@example.org, b@example.org"
    assert parsed["Date"] == "Sun, 22 Nov 2026 07:00:00 +0000"
    assert re.fullmatch(r"<[^@>]+@example\.org>", parsed["Message-ID"])
    assert parsed.get_body(("html",)).get_content() == digest.html
    assert parsed.get_body(("plain",)).get_content() == digest.text
    with pytest.raises(ValueError, match="no recipients"):
        to_email(digest, sender="monitor@example.org", recipients=[])


@pytest.mark.browser
def test_html_fits_a_phone_without_sideways_scrolling(browser):
    unbroken = make(8, "https://example.org/" + "averyveryverylongwordwithoutspaces" * 3, score=0.95, outlets=2)
    digest = build_digest([*STORIES, unbroken], day=DAY, topic=TOPIC, now=NOW, archive_url="https://monitor.example")
    page = browser.new_page(viewport={"width": 390, "height": 800})
    try:
        page.set_content(digest.html)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        card = page.evaluate("[...document.querySelectorAll('table table')].map(t => t.getBoundingClientRect().width)[0]")
        assert 360 <= card <= 390
        sizes = page.evaluate("[...document.querySelectorAll('a')].map(a => parseFloat(getComputedStyle(a).fontSize))")
        assert max(sizes) == 18 and min(sizes) >= 12  # headlines at 18 px; the brief list, sources and footer readable too
        page.set_viewport_size({"width": 1200, "height": 800})
        assert page.evaluate("document.querySelector('table table').getBoundingClientRect().width") == 640
    finally:
        page.close()
