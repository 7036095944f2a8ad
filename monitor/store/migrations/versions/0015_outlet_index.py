"""an index on articles' outlet names, for the archive's outlet filter

The filter asks for the stories with an article from an outlet, by its page's site name or its feed's name
(case aside). Over many stories it is one set built per statement (monitor/store/filters.py): from this
index for the site names, and from `ix_articles_feed_id` for the feeds. story_id is in the index so that
SQLite need not read it from each article's wide row.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30 03:10:00
"""

from alembic import op


revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE INDEX ix_articles_outlet ON articles (lower(site_name), story_id)")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_articles_outlet")
