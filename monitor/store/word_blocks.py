"""The archive's words indexed again in blocks of BLOCK article ids, so that an old slice is ranked among its block's matches.

A date filter in the past (until last December) ranks a slice that the recent word index (monitor/store/words.py)
does not hold, and the whole archive's index costs what the whole archive holds: on SQLite bm25 counts each
word's articles across the index it ranks in (43 ms of a 62 ms statement for "camera ban" at a million, "camera"
being in most articles); on PostgreSQL the GIN index yields every match before the slice's id range cuts them (54
of 74 ms). Ids grow as articles are stored, so a block is a stretch of time: 44 days at 3,000 articles a day.
Each block has an index of its own: on SQLite an FTS5 table that triggers bounded by its ids keep in step with the
articles (0004's definition and rank), on PostgreSQL a GIN index partial to its ids (the planner proves a
statement's literal bounds imply it). `keep_blocks` makes them one block ahead of the newest article, so each
takes its articles in as they are stored; migration 0019 made those of the articles stored before it.
"""

from __future__ import annotations

from sqlalchemy import Integer, column, func, select, table, text
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from monitor.store.leases import lock_word_blocks
from monitor.store.models import Article

BLOCK = 2**17  # article ids a block holds
BLOCKS_TABLE = "articles_fts_blocks"  # the blocks made, 0 to the last, one row each; both stores
INDEX_PREFIX = "ix_articles_words_b"  # PostgreSQL: the blocks' partial GIN indexes

blocks_made = table(BLOCKS_TABLE, column("block", Integer))

_SQLITE_TABLE = """
CREATE VIRTUAL TABLE {name} USING fts5(
    title, text, content='articles', content_rowid='id', tokenize='porter unicode61 remove_diacritics 2'
)"""
_SQLITE_TRIGGERS = {
    "insert": "AFTER INSERT ON articles WHEN new.id >= {low} AND new.id < {high} BEGIN {insert_new} END",
    "delete": "AFTER DELETE ON articles WHEN old.id >= {low} AND old.id < {high} BEGIN {delete_old} END",
    "update": "AFTER UPDATE OF title, text ON articles WHEN old.id >= {low} AND old.id < {high} BEGIN {delete_old} {insert_new} END",
}
_POSTGRESQL_INDEX = "CREATE INDEX {name} ON articles USING gin (search_vector) WHERE id >= {low} AND id < {high}"


def table_name(block: int) -> str:
    """The block's FTS5 table on SQLite."""
    return f"articles_fts_b{block}"


def bounds(block: int) -> tuple[int, int]:
    """The block's first id and the first id past it."""
    return block * BLOCK, (block + 1) * BLOCK


def keep_blocks(session: Session) -> None:
    """Make the blocks up to the one after the newest article's, before articles are stored (on PostgreSQL a partial
    index takes a share lock on the articles: made before this transaction writes any, it waits for the writers
    in progress rather than deadlocking with one that waits for it). Once per block; a read of two maxima otherwise."""
    if _missing(session):
        lock_word_blocks(session)
        make_missing(session)  # another process may have made them meanwhile


def make_missing(session: Session | Connection) -> None:
    """The blocks not made yet, up to the one after the newest article's."""
    for block in _missing(session):
        _make_block(session, block)


def _missing(session: Session | Connection) -> range:
    asked = select(select(func.max(blocks_made.c.block)).scalar_subquery(), select(func.max(Article.id)).scalar_subquery())
    made, newest = session.execute(asked).one()
    return range(0 if made is None else made + 1, (newest or 0) // BLOCK + 2)  # through the block after the newest's


def _make_block(session: Session | Connection, block: int) -> None:
    """The block's index, holding the articles stored in its ids already, and its row in the blocks table."""
    low, high = bounds(block)
    if _dialect(session) == "postgresql":
        session.execute(text(_POSTGRESQL_INDEX.format(name=f"{INDEX_PREFIX}{block}", low=low, high=high)))
    else:
        name = table_name(block)
        session.execute(text(_SQLITE_TABLE.format(name=name)))
        session.execute(text(f"INSERT INTO {name}({name}, rank) VALUES ('rank', 'bm25(4.0, 1.0)')"))
        session.execute(text(f"INSERT INTO {name}(rowid, title, text) SELECT id, title, text FROM articles WHERE id >= {low} AND id < {high}"))
        statements = {
            "insert_new": f"INSERT INTO {name}(rowid, title, text) VALUES (new.id, new.title, new.text);",
            "delete_old": f"INSERT INTO {name}({name}, rowid, title, text) VALUES ('delete', old.id, old.title, old.text);",
        }
        for event, trigger in _SQLITE_TRIGGERS.items():
            session.execute(text(f"CREATE TRIGGER {name}_{event} " + trigger.format(low=low, high=high, **statements)))
    session.execute(blocks_made.insert().values(block=block))


def _dialect(session: Session | Connection) -> str:
    return (session.get_bind() if isinstance(session, Session) else session).dialect.name


def drop_blocks(connection: Connection) -> None:
    """Every block's index and trigger (the blocks table stays): what migration 0019's downgrade undoes."""
    postgresql = _dialect(connection) == "postgresql"
    for block in connection.scalars(select(blocks_made.c.block)).all():
        if postgresql:
            connection.execute(text(f"DROP INDEX IF EXISTS {INDEX_PREFIX}{block}"))
            continue
        name = table_name(block)
        for event in _SQLITE_TRIGGERS:
            connection.execute(text(f"DROP TRIGGER IF EXISTS {name}_{event}"))
        connection.execute(text(f"DROP TABLE IF EXISTS {name}"))
