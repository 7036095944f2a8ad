"""the values the search's filters list, kept as articles are placed

Listing every vendor, country, action and outlet from the stories and articles themselves read the whole
archive at every search that asked for facet counts (7.5 s at a million). The table is filled here from what
the archive holds, and from then on as each feed's articles are stored (monitor/store/facets.py).

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-30 05:40:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('facet_values',
    sa.Column('facet', sa.String(length=16), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('facet', 'value')
    )
    elements = "json_each(stories.{0})" if op.get_bind().dialect.name == "sqlite" else "json_array_elements_text(stories.{0}) AS value"
    tags = [f"SELECT '{name}' AS facet, value FROM stories, {elements.format(name)}" for name in ("vendors", "countries", "actions")]
    outlets = (
        "SELECT 'sources' AS facet, COALESCE(NULLIF(articles.site_name, ''), feeds.name) AS value FROM articles "
        "LEFT OUTER JOIN feeds ON feeds.id = articles.feed_id WHERE articles.story_id IS NOT NULL"
    )
    values = " UNION ".join([*tags, outlets])
    op.execute(f"INSERT INTO facet_values (facet, value) SELECT facet, value FROM ({values}) AS found WHERE value IS NOT NULL AND value <> ''")


def downgrade() -> None:
    op.drop_table('facet_values')
