"""A page of search results as the reader sees it: each story's tags, topic score and outlets, and a snippet of its
best article with the query's words marked (FTS5's highlight on SQLite, ts_headline on PostgreSQL)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Text, and_, bindparam, case, func, literal_column, select
from sqlalchemy.dialects import postgresql  # noqa: F401 - its text search functions, registered before _HEADLINES is built
from sqlalchemy.orm import Session

from monitor.labels import lead, story_start
from monitor.store.models import Article, Feed, Story, StoryTopic
from monitor.store.terms import MARK_END, MARK_START, Terms, clean, cut_marked, marked_passage, render_snippet, unmarked
from monitor.store.views import outlet_name
from monitor.store.words import FTS_TABLE, REGCONFIG, fts, fts_match, tsvector

SNIPPET_WORDS = 30
RUN_GAP = 2_000  # rowids between two hits past which seeking each costs less than reading the matches between
HIGHLIGHT_ALL = f"StartSel={MARK_START}, StopSel={MARK_END}, HighlightAll=true"
HEADLINE_CHARS = 1_500  # of an article's text that PostgreSQL highlights first: about 250 words, where most passages lie


@dataclass(frozen=True)
class SearchHit:
    story_id: int
    title: str
    url: str
    published: datetime | None
    score: float  # the topic score of the story
    vendors: list[str]
    countries: list[str]
    actions: list[str]
    sources: list[str]  # outlet names, earliest first, each once
    snippet: str  # safe HTML: the text escaped, matched words in <mark>…</mark>
    article_id: int  # the best-matching article
    rank: float  # the relevance (higher better): -bm25 / ts_rank, cosine, or the fused score
    matched: str | None = None  # how the query found it: "words", "meaning" or "both"; None for a list without a query
    similarity: float | None = None  # cosine of the query and the story's nearest article, when meaning took part


def _stories_statement():
    return (
        select(
            Story.id, Story.title, Story.url, Story.published_at, Story.first_seen_at, Story.vendors, Story.countries, Story.actions,
            StoryTopic.score,
        )
        .outerjoin(StoryTopic, (StoryTopic.story_id == Story.id) & (StoryTopic.topic == bindparam("topic")))
        .where(Story.id.in_(bindparam("ids", expanding=True)))
    )


def _members_statement():
    when = func.coalesce(Article.published_at, Article.fetched_at)
    return (
        select(Article.id, Article.story_id, Article.url, Article.site_name, Feed.name)
        .outerjoin(Feed, Feed.id == Article.feed_id)
        .where(Article.story_id.in_(bindparam("ids", expanding=True)))
        .order_by(when, Article.id)
    )


def _fts_statement(*, spread: bool):
    """FTS5's highlighted texts of a page's hits (sorted ids), read as _hits_within says."""
    highlighted = func.highlight(literal_column(FTS_TABLE), 1, MARK_START, MARK_END)  # column 1: the text
    statement = select(fts.c.rowid, highlighted, Article.title).join(Article, Article.id == fts.c.rowid).where(fts_match(bindparam("match")))
    ids = bindparam("ids", expanding=True)
    if spread:
        return statement.where(fts.c.rowid.in_(ids))
    return statement.where(fts.c.rowid.between(bindparam("first"), bindparam("last")), (fts.c.rowid + 0).in_(ids))


def _headline_statement(chars: int | None):
    """ts_headline of texts (their first chars, or whole), where the stored tsvector holds the words in the text itself."""
    query = func.websearch_to_tsquery(REGCONFIG, bindparam("words", type_=Text))
    any_word = func.websearch_to_tsquery(REGCONFIG, bindparam("any_word", type_=Text))
    in_text = func.ts_filter(tsvector, literal_column("'{b}'")).op("@@")(any_word)
    text = Article.text if chars is None else func.left(Article.text, chars)
    # the words tested on each row read, in the CASE: in WHERE, the planner proves the page's ids lie within a block of
    # the word index and ANDs that block's GIN index with them, reading every match of the words (6 of 10 ms)
    holds = and_(tsvector.op("@@")(query), in_text)
    return select(Article.id, case((holds, func.ts_headline(REGCONFIG, text, query, HIGHLIGHT_ALL))), Article.title, func.length(Article.text)).where(
        Article.id.in_(bindparam("ids", expanding=True)), func.coalesce(Article.text, "") != ""
    )


# Built once, run with each page's values: SQLAlchemy spent more building a statement than running it once its SQL
# was cached (about 1 ms each on this 2-core VM; a page has four to six).
_STORIES = _stories_statement()
_MEMBERS = _members_statement()
_FTS_RUN, _FTS_SPREAD = _fts_statement(spread=False), _fts_statement(spread=True)
_HEADLINES = {chars: _headline_statement(chars) for chars in (HEADLINE_CHARS, None)}
_LEADS = select(Article.id, Article.title, Article.text, Article.summary).where(Article.id.in_(bindparam("ids", expanding=True)))


def page_hits(
    session: Session, dialect: str, rows: list[tuple], terms: Terms | None, topic: str, *, matched: dict[int, str], similarity: dict[int, float]
) -> list[SearchHit]:
    """The page's stories as hits: tags, topic score, outlets, a snippet of the best article, and how the query found each."""
    ids = [row[0] for row in rows]
    if not ids:
        return []
    stories = {story.id: story for story in session.execute(_STORIES, {"topic": clean(topic), "ids": ids})}
    outlets: dict[int, list[str]] = defaultdict(list)
    lead_article: dict[int, int] = {}
    for article_id, story_id, url, site_name, feed_name in session.execute(_MEMBERS, {"ids": ids}):
        outlets[story_id].append(outlet_name(site_name, feed_name, url))
        lead_article.setdefault(story_id, article_id)
        if url == stories[story_id].url:
            lead_article[story_id] = article_id
    chosen = {row[0]: row[1] if row[1] is not None else lead_article.get(row[0]) for row in rows}
    snippets = _snippets(session, dialect, terms, [a for a in chosen.values() if a is not None])
    hits = []
    for story_id, _article, rank in rows:
        if story_id not in stories:
            continue
        story = stories[story_id]
        article_id = chosen[story_id]
        hits.append(
            SearchHit(
                story_id=story.id,
                title=story.title,
                url=story.url,
                published=story.published_at or story.first_seen_at,
                score=float(story.score or 0.0),
                vendors=list(story.vendors),
                countries=list(story.countries),
                actions=list(story.actions),
                sources=list(dict.fromkeys(outlets[story_id])),
                snippet=snippets.get(article_id, ""),
                article_id=article_id or 0,
                rank=float(rank),
                matched=matched.get(story_id),
                similarity=round(similarity[story_id], 3) if story_id in similarity else None,
            )
        )
    return hits


def _snippets(session: Session, dialect: str, terms: Terms | None, article_ids: list[int]) -> dict[int, str]:
    """Safe HTML snippets: the matched passage with <mark>s where the words matched, else the article's lead."""
    raw: dict[int, str] = {}
    if terms is not None and article_ids:
        # the text highlighted from its start, so that the passage can start after the section name and headline that open it
        if dialect == "sqlite":
            raw = _passages(session.execute(*_hits_within(terms, sorted(set(article_ids)))))
        else:
            raw = _postgresql_passages(session, terms, article_ids)
    rest = [a for a in article_ids if a not in raw]
    if rest:
        for article_id, title, text, summary in session.execute(_LEADS, {"ids": rest}):
            raw[article_id] = unmarked(lead(text or summary, 200, title=title) or title)
    return {article_id: render_snippet(text) for article_id, text in raw.items()}


def _passages(rows) -> dict[int, str]:
    """Each highlighted text's marked passage, from the start of its story; none where the words marked only its headline
    (the lead then says more)."""
    passages = {}
    for article_id, text, title, *_ in rows:
        passage = marked_passage(cut_marked(text or "", story_start(unmarked(text or ""), title)), SNIPPET_WORDS)
        if passage:
            passages[article_id] = passage
    return passages


def _postgresql_passages(session: Session, terms: Terms, article_ids: list[int]) -> dict[int, str]:
    """ts_headline parses all the text it is given, as to_tsvector does (16 ms for a page of 20 articles of 450 words),
    while a passage is read from the first mark on. So only texts holding one of the words (their lexemes in the stored
    tsvector's text part) are highlighted, each first in its first HEADLINE_CHARS, and whole only where the passage
    that cut holds does not suffice: no mark in it, or the passage running on to where it ends."""
    words = {"words": terms.websearch(), "any_word": terms.any_word()}
    first = session.execute(_HEADLINES[HEADLINE_CHARS], {**words, "ids": article_ids}).all()
    passages = _passages(first)
    cut = [row[0] for row in first if row[1] is not None and row[3] > HEADLINE_CHARS and not passages.get(row[0], "").endswith("…")]
    return passages | (_passages(session.execute(_HEADLINES[None], {**words, "ids": cut})) if cut else {})  # "…": the passage ends before the cut


def _hits_within(terms: Terms, article_ids: list[int]) -> tuple:
    """How FTS5 is to find a page's hits (sorted), as (statement, values): it reads the words' lists within one rowid
    range per cursor, or seeks each id it is handed as `rowid IN`. Hits close together (none more than RUN_GAP after
    the one before, as the newest matches are): their range, the ids then tested as an expression it is not offered
    (0.9 against 4 ms for 20 of the newest at a million). Hits spread out (as meaning finds them): a seek each, 2 to 3
    ms for 20, where their range read every match between them, 40 to 56 ms."""
    values = {"match": terms.fts5(), "ids": article_ids}
    if all(later - earlier <= RUN_GAP for earlier, later in zip(article_ids, article_ids[1:])):
        return _FTS_RUN, values | {"first": article_ids[0], "last": article_ids[-1]}
    return _FTS_SPREAD, values
