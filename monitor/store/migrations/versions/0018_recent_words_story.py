"""the recent words carry their article's story on PostgreSQL

A word search over the archive's last months (0017) ranks stories, so each match needed its article's row for
the story id: at a million, 5,888 matches of "council procurement" in the 120-day slice, a random read of the
articles table each, 36 ms of a narrow filter's search. `articles_recent_words.story_id` holds it beside the
words, filled here and kept by the trigger, which now also runs when an article's story is set: as it is placed
(after its insert), moved to another story, or its story deleted (the foreign key's SET NULL is an update too).

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-30 21:00:00
"""

from alembic import op


revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None

_FUNCTION = """
CREATE OR REPLACE FUNCTION articles_recent_words_keep() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.id >= (SELECT id FROM articles_fts_recent_floor) THEN
        INSERT INTO articles_recent_words(id, {columns}) VALUES (NEW.id, {values})
        ON CONFLICT (id) DO UPDATE SET {updates};
    END IF;
    RETURN NULL;
END $$"""
_TRIGGER = """
CREATE TRIGGER articles_recent_words_keep AFTER INSERT OR UPDATE OF {columns} ON articles
FOR EACH ROW EXECUTE FUNCTION articles_recent_words_keep()"""


def _keep(columns: list[str]) -> None:
    """The trigger that copies these columns of each article from the floor on into the recent words."""
    op.execute("DROP TRIGGER articles_recent_words_keep ON articles")
    values = ", ".join(f"NEW.{name}" for name in columns)
    updates = ", ".join(f"{name} = EXCLUDED.{name}" for name in columns)
    op.execute(_FUNCTION.format(columns=", ".join(columns), values=values, updates=updates))
    watched = ["title", "text", *(["story_id"] if "story_id" in columns else [])]
    op.execute(_TRIGGER.format(columns=", ".join(watched)))


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("ALTER TABLE articles_recent_words ADD COLUMN story_id INTEGER")
    op.execute("UPDATE articles_recent_words AS recent SET story_id = articles.story_id FROM articles WHERE articles.id = recent.id")
    _keep(["search_vector", "story_id"])


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    _keep(["search_vector"])
    op.execute("ALTER TABLE articles_recent_words DROP COLUMN story_id")
