"""the archive's word index: FTS5 on SQLite, a tsvector with a GIN index on PostgreSQL

SQLite: an external-content FTS5 table over articles(title, text). External content keeps the words
once (in articles) while snippet() and highlight() still read them; a contentless table would need a
second copy for snippets. Triggers keep it current on every insert, update and delete of articles.
Note for later migrations: a batch (copy-and-move) rebuild of `articles` on SQLite drops these
triggers; such a migration must create them again (see `_SQLITE_TRIGGERS`).

PostgreSQL: a generated tsvector column (english, title weighted A, text B) kept current by the
server itself, with a GIN index. The models do not declare it (SQLite has no such column);
`monitor.store.search.is_search_index` tells Alembic's comparison to leave it alone.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 09:00:00
"""

from alembic import op


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

# the rank column orders by bm25 with a title match worth four times a text match
_SQLITE_TABLE = """
CREATE VIRTUAL TABLE articles_fts USING fts5(
    title, text, content='articles', content_rowid='id', tokenize='porter unicode61 remove_diacritics 2'
)
"""
_SQLITE_TRIGGERS = {
    "articles_fts_insert": """
        CREATE TRIGGER articles_fts_insert AFTER INSERT ON articles BEGIN
            INSERT INTO articles_fts(rowid, title, text) VALUES (new.id, new.title, new.text);
        END""",
    "articles_fts_delete": """
        CREATE TRIGGER articles_fts_delete AFTER DELETE ON articles BEGIN
            INSERT INTO articles_fts(articles_fts, rowid, title, text) VALUES ('delete', old.id, old.title, old.text);
        END""",
    "articles_fts_update": """
        CREATE TRIGGER articles_fts_update AFTER UPDATE OF title, text ON articles BEGIN
            INSERT INTO articles_fts(articles_fts, rowid, title, text) VALUES ('delete', old.id, old.title, old.text);
            INSERT INTO articles_fts(rowid, title, text) VALUES (new.id, new.title, new.text);
        END""",
}
# left(): a tsvector holds at most 1 MB; the first 200,000 characters of an article are plenty
_POSTGRES_COLUMN = """
ALTER TABLE articles ADD COLUMN search_vector tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector('english', coalesce(title, '')), 'A')
    || setweight(to_tsvector('english', left(coalesce(text, ''), 200000)), 'B')
) STORED
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(_SQLITE_TABLE)
        op.execute("INSERT INTO articles_fts(articles_fts, rank) VALUES ('rank', 'bm25(4.0, 1.0)')")
        for trigger in _SQLITE_TRIGGERS.values():
            op.execute(trigger)
        op.execute("INSERT INTO articles_fts(articles_fts) VALUES ('rebuild')")  # the rows stored before
    else:
        op.execute(_POSTGRES_COLUMN)  # computed for the existing rows as the column is added
        op.execute("CREATE INDEX ix_articles_search_vector ON articles USING gin (search_vector)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in _SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute("DROP TABLE IF EXISTS articles_fts")
    else:
        op.execute("DROP INDEX IF EXISTS ix_articles_search_vector")
        op.execute("ALTER TABLE articles DROP COLUMN IF EXISTS search_vector")
