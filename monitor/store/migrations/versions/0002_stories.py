"""stories, copies and MinHash signatures

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 20:39:27.004895
"""

from alembic import op
import sqlalchemy as sa
import monitor.store.models


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('stories',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('title', sa.Text(), nullable=False),
    sa.Column('url', sa.Text(), nullable=False),
    sa.Column('first_seen_at', monitor.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_updated_at', monitor.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('published_at', monitor.store.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('article_count', sa.Integer(), nullable=False),
    sa.Column('vendors', sa.JSON(), nullable=False),
    sa.Column('countries', sa.JSON(), nullable=False),
    sa.Column('actions', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('stories', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_stories_first_seen_at'), ['first_seen_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_stories_last_updated_at'), ['last_updated_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_stories_published_at'), ['published_at'], unique=False)

    op.create_table('story_topics',
    sa.Column('story_id', sa.Integer(), nullable=False),
    sa.Column('topic', sa.String(length=100), nullable=False),
    sa.Column('score', sa.Float(), nullable=False),
    sa.Column('relevant', sa.Boolean(), nullable=False),
    sa.Column('relevant_since', monitor.store.models.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['story_id'], ['stories.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('story_id', 'topic')
    )
    with op.batch_alter_table('story_topics', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_story_topics_relevant'), ['relevant'], unique=False)

    with op.batch_alter_table('articles', schema=None) as batch_op:
        batch_op.add_column(sa.Column('minhash', sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column('story_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('duplicate_of_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('copy_kind', sa.String(length=8), nullable=True))
        batch_op.create_index(batch_op.f('ix_articles_duplicate_of_id'), ['duplicate_of_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_articles_story_id'), ['story_id'], unique=False)
        batch_op.create_foreign_key('fk_articles_story_id_stories', 'stories', ['story_id'], ['id'], ondelete='SET NULL')
        batch_op.create_foreign_key('fk_articles_duplicate_of_id_articles', 'articles', ['duplicate_of_id'], ['id'], ondelete='SET NULL')



def downgrade() -> None:
    with op.batch_alter_table('articles', schema=None) as batch_op:
        batch_op.drop_constraint('fk_articles_duplicate_of_id_articles', type_='foreignkey')
        batch_op.drop_constraint('fk_articles_story_id_stories', type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_articles_story_id'))
        batch_op.drop_index(batch_op.f('ix_articles_duplicate_of_id'))
        batch_op.drop_column('copy_kind')
        batch_op.drop_column('duplicate_of_id')
        batch_op.drop_column('story_id')
        batch_op.drop_column('minhash')

    with op.batch_alter_table('story_topics', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_story_topics_relevant'))

    op.drop_table('story_topics')
    with op.batch_alter_table('stories', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_stories_published_at'))
        batch_op.drop_index(batch_op.f('ix_stories_last_updated_at'))
        batch_op.drop_index(batch_op.f('ix_stories_first_seen_at'))

    op.drop_table('stories')
