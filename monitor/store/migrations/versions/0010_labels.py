"""readers' labels: "relevant" / "not relevant" on an article or a story, with who and when

A label wins over the model for its article (a story's label for all of the story's articles), and
`monitor train` folds the labels into the topic's training set (`folded_at`).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29 07:30:00
"""

import sqlalchemy as sa
from alembic import op

import monitor.store.models

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('labels',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('topic', sa.String(length=100), nullable=False),
    sa.Column('article_id', sa.Integer(), nullable=True),
    sa.Column('story_id', sa.Integer(), nullable=True),
    sa.Column('relevant', sa.Boolean(), nullable=False),
    sa.Column('labelled_by', sa.String(length=200), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('created_at', monitor.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('folded_at', monitor.store.models.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['article_id'], ['articles.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['story_id'], ['stories.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('labels', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_labels_topic'), ['topic'], unique=False)
        batch_op.create_index(batch_op.f('ix_labels_article_id'), ['article_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_labels_story_id'), ['story_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('labels', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_labels_story_id'))
        batch_op.drop_index(batch_op.f('ix_labels_article_id'))
        batch_op.drop_index(batch_op.f('ix_labels_topic'))
    op.drop_table('labels')
