"""stored articles without the highlight sentinels U+E000 and U+E001

Word search marks matched words with these two private-use characters inside the database and turns
them into <mark> afterwards; an article whose own text held them showed stray marks in its snippets.
The store now leaves them out of every article it writes; this removes them from the articles stored
before (the word indexes follow: a trigger on SQLite, the generated column on PostgreSQL).
Downgrade leaves the text as it is: the characters removed carried no words.

Revision ID: 0009
Revises: 0006
Create Date: 2026-11-29 04:30:00
"""

from alembic import op
from sqlalchemy import text

revision = '0009'
down_revision = '0007'
branch_labels = None
depends_on = None

SENTINELS = {"start": "\ue000", "end": "\ue001"}


def upgrade() -> None:
    for name in ("title", "text", "summary"):
        op.execute(
            text(
                f"UPDATE articles SET {name} = replace(replace({name}, :start, ''), :end, '') "
                f"WHERE {name} LIKE '%' || :start || '%' OR {name} LIKE '%' || :end || '%'"
            ).bindparams(**SENTINELS)
        )


def downgrade() -> None:
    pass
