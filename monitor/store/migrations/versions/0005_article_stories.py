"""a narrow article → story map beside the word index (SQLite only)

Word search joins every FTS5 match to its story. `articles.story_id` was added by ALTER TABLE
(0002), so it sits at the end of a wide record, behind the text and the vector blobs: reading it
walks overflow pages, and the planner will not read it from `ix_articles_story_id` instead.
`article_stories` holds only (article_id, story_id), kept current by triggers on articles; joined
instead, it made the word pass 2 to 2.5 times faster at 100,000 articles (bench/archive.py).

PostgreSQL needs none: it reads each match's tsvector (TOASTed, several pages) from the heap row
that also holds story_id, and that read is its cost, which a covering (id, story_id) index would not avoid.
Like 0004's triggers, these are lost by a batch (copy-and-move) rebuild of `articles`.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 12:00:00
"""

from alembic import op


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

_SQLITE_TABLE = "CREATE TABLE article_stories (article_id INTEGER PRIMARY KEY, story_id INTEGER NOT NULL)"
_SQLITE_TRIGGERS = {
    "article_stories_insert": """
        CREATE TRIGGER article_stories_insert AFTER INSERT ON articles WHEN new.story_id IS NOT NULL BEGIN
            INSERT INTO article_stories(article_id, story_id) VALUES (new.id, new.story_id);
        END""",
    "article_stories_delete": """
        CREATE TRIGGER article_stories_delete AFTER DELETE ON articles BEGIN
            DELETE FROM article_stories WHERE article_id = old.id;
        END""",
    # also fired by the foreign key's ON DELETE SET NULL when a story is deleted
    "article_stories_update": """
        CREATE TRIGGER article_stories_update AFTER UPDATE OF id, story_id ON articles BEGIN
            DELETE FROM article_stories WHERE article_id = old.id;
            INSERT INTO article_stories(article_id, story_id) SELECT new.id, new.story_id WHERE new.story_id IS NOT NULL;
        END""",
}


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute(_SQLITE_TABLE)
    for trigger in _SQLITE_TRIGGERS.values():
        op.execute(trigger)
    op.execute("INSERT INTO article_stories(article_id, story_id) SELECT id, story_id FROM articles WHERE story_id IS NOT NULL")


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for name in _SQLITE_TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
    op.execute("DROP TABLE IF EXISTS article_stories")
