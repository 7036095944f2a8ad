"""the archive's last months' words indexed apart on PostgreSQL too (0014 did it for SQLite)

A word search ranks the matches within a slice of the archive (monitor/store/words.py), but on PostgreSQL
the GIN index yields every match of the whole archive before the slice's id range cuts them: 222,000
articles for "camera ban" at a million, 85 to 90 ms a statement, growing with every year kept.
`articles_recent_words` holds the id and tsvector of the articles from `articles_fts_recent_floor.id` on
(0014's floor, which `words.keep_recent` moves on both stores), with a GIN index of its own, so the slices
within those months read only those months' matches. A trigger keeps it in step as articles are stored
or edited; a deleted article leaves it through the foreign key.

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-30 12:30:00
"""

from alembic import op


revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None

_TABLES = (
    """
    CREATE TABLE articles_recent_words (
        id INTEGER PRIMARY KEY REFERENCES articles(id) ON DELETE CASCADE,
        search_vector tsvector NOT NULL
    )""",
    "CREATE TABLE articles_fts_recent_floor (id INTEGER NOT NULL)",
)
# the articles fetched in the 121 days before the newest one; every later one (ids grow with fetches), as 0014's
_FLOOR = """
INSERT INTO articles_fts_recent_floor(id) SELECT coalesce(
    (SELECT id FROM articles WHERE fetched_at >= (SELECT max(fetched_at) - interval '121 days' FROM articles) ORDER BY fetched_at LIMIT 1),
    (SELECT coalesce(max(id), 0) + 1 FROM articles)
)"""
_FUNCTION = """
CREATE FUNCTION articles_recent_words_keep() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.id >= (SELECT id FROM articles_fts_recent_floor) THEN
        INSERT INTO articles_recent_words(id, search_vector) VALUES (NEW.id, NEW.search_vector)
        ON CONFLICT (id) DO UPDATE SET search_vector = EXCLUDED.search_vector;
    END IF;
    RETURN NULL;
END $$"""
_TRIGGER = """
CREATE TRIGGER articles_recent_words_keep AFTER INSERT OR UPDATE OF title, text ON articles
FOR EACH ROW EXECUTE FUNCTION articles_recent_words_keep()"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for statement in _TABLES:
        op.execute(statement)
    op.execute(_FLOOR)
    op.execute("INSERT INTO articles_recent_words(id, search_vector) SELECT id, search_vector FROM articles WHERE id >= (SELECT id FROM articles_fts_recent_floor)")
    op.execute("CREATE INDEX ix_articles_recent_words ON articles_recent_words USING gin (search_vector)")
    op.execute(_FUNCTION)
    op.execute(_TRIGGER)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS articles_recent_words_keep ON articles")
    op.execute("DROP FUNCTION IF EXISTS articles_recent_words_keep()")
    op.execute("DROP TABLE IF EXISTS articles_recent_words")
    op.execute("DROP TABLE IF EXISTS articles_fts_recent_floor")
