"""the archive's words indexed again in blocks of 131,072 article ids, for the slices the recent index does not hold

A word search with a date filter in the past ranks an old slice of the archive (monitor/store/words.py), and the
whole archive's word index costs what the whole archive holds (monitor/store/word_blocks.py says how, on each
store). Each block of ids gets an index of its own: an FTS5 table kept by triggers on SQLite, a partial GIN
index on PostgreSQL; `articles_fts_blocks` lists those made. Here they are made for the articles stored before,
and one block ahead; `word_blocks.keep_blocks` makes the next ones as the archive grows.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-01 00:30:00
"""

from alembic import op

from monitor.store.word_blocks import BLOCKS_TABLE, drop_blocks, make_missing

revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(f"CREATE TABLE {BLOCKS_TABLE} (block INTEGER PRIMARY KEY)")
    make_missing(op.get_bind())


def downgrade() -> None:
    drop_blocks(op.get_bind())
    op.execute(f"DROP TABLE {BLOCKS_TABLE}")
