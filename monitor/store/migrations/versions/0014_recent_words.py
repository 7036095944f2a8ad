"""a second word index over the archive's last weeks only (SQLite only)

FTS5's bm25 weighs each word by how many articles of the whole index hold it, and counts them at every
ranked statement by reading the word's whole list: at a million articles that costs 10 to 30 ms a
query for common words, more than ranking the matches of the slice searched (monitor/store/words.py).
Most word searches end within the archive's last 120 days (filtered ones too), so those slices are
ranked in `articles_fts_recent`, which holds the articles from `articles_fts_recent_floor.id` on; its
counts are those months'. Its triggers are 0004's, bounded by the floor; `words.keep_recent` moves the floor as the
archive grows. The rank is 0004's: bm25 with a title match worth four times a text match.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30 03:00:00
"""

from alembic import op


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None

_SQLITE_TABLES = (
    """
    CREATE VIRTUAL TABLE articles_fts_recent USING fts5(
        title, text, content='articles', content_rowid='id', tokenize='porter unicode61 remove_diacritics 2'
    )""",
    "CREATE TABLE articles_fts_recent_floor (id INTEGER NOT NULL)",
)
_IN_RECENT = "(SELECT id FROM articles_fts_recent_floor)"
_SQLITE_TRIGGERS = {
    "articles_fts_recent_insert": f"""
        CREATE TRIGGER articles_fts_recent_insert AFTER INSERT ON articles WHEN new.id >= {_IN_RECENT} BEGIN
            INSERT INTO articles_fts_recent(rowid, title, text) VALUES (new.id, new.title, new.text);
        END""",
    "articles_fts_recent_delete": f"""
        CREATE TRIGGER articles_fts_recent_delete AFTER DELETE ON articles WHEN old.id >= {_IN_RECENT} BEGIN
            INSERT INTO articles_fts_recent(articles_fts_recent, rowid, title, text) VALUES ('delete', old.id, old.title, old.text);
        END""",
    "articles_fts_recent_update": f"""
        CREATE TRIGGER articles_fts_recent_update AFTER UPDATE OF title, text ON articles WHEN old.id >= {_IN_RECENT} BEGIN
            INSERT INTO articles_fts_recent(articles_fts_recent, rowid, title, text) VALUES ('delete', old.id, old.title, old.text);
            INSERT INTO articles_fts_recent(rowid, title, text) VALUES (new.id, new.title, new.text);
        END""",
}
# the articles fetched in the 121 days before the newest one; every later one (ids grow with fetches)
_FLOOR = """
INSERT INTO articles_fts_recent_floor(id) SELECT coalesce(
    (SELECT id FROM articles WHERE fetched_at >= (SELECT datetime(max(fetched_at), '-121 days') FROM articles) ORDER BY fetched_at LIMIT 1),
    (SELECT coalesce(max(id), 0) + 1 FROM articles)
)"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for statement in _SQLITE_TABLES:
        op.execute(statement)
    op.execute("INSERT INTO articles_fts_recent(articles_fts_recent, rank) VALUES ('rank', 'bm25(4.0, 1.0)')")
    op.execute(_FLOOR)
    op.execute(f"INSERT INTO articles_fts_recent(rowid, title, text) SELECT id, title, text FROM articles WHERE id >= {_IN_RECENT}")
    for trigger in _SQLITE_TRIGGERS.values():
        op.execute(trigger)


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for name in _SQLITE_TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
    op.execute("DROP TABLE IF EXISTS articles_fts_recent")
    op.execute("DROP TABLE IF EXISTS articles_fts_recent_floor")
