"""WebSub push: the hub a feed advertises, its subscriptions, and the pushed bodies waiting to be read

`feeds.hub_url` / `topic_url`: the hub and rel="self" a poll found (Link header or the feed's own links).
`push_subscriptions`: one per feed, named by a random id (the callback's path), with the secret the hub
signs pushes with, the lease and how push is going. `pushes`: a verified pushed body, kept until the
pipeline has read it; one that fails stays with its error. Plain ALTER TABLE ADD COLUMN for the feeds.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-29 07:30:00
"""

from alembic import op
import sqlalchemy as sa
import monitor.store.models


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

UTC = monitor.store.models.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.add_column('feeds', sa.Column('hub_url', sa.Text(), nullable=True))
    op.add_column('feeds', sa.Column('topic_url', sa.Text(), nullable=True))
    op.create_table('push_subscriptions',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('feed_id', sa.Integer(), nullable=False),
    sa.Column('hub_url', sa.Text(), nullable=False),
    sa.Column('topic_url', sa.Text(), nullable=False),
    sa.Column('secret', sa.String(length=64), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('requested_at', UTC, nullable=True),
    sa.Column('verified_at', UTC, nullable=True),
    sa.Column('lease_expires_at', UTC, nullable=True),
    sa.Column('last_push_at', UTC, nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_try_at', UTC, nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('deferred_due', UTC, nullable=True),
    sa.Column('created_at', UTC, nullable=False),
    sa.ForeignKeyConstraint(['feed_id'], ['feeds.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('feed_id')
    )
    op.create_table('pushes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('feed_id', sa.Integer(), nullable=False),
    sa.Column('body', sa.LargeBinary(), nullable=False),
    sa.Column('content_type', sa.String(length=200), nullable=False),
    sa.Column('received_at', UTC, nullable=False),
    sa.Column('next_try_at', UTC, nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['feed_id'], ['feeds.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('pushes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_pushes_feed_id'), ['feed_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_pushes_next_try_at'), ['next_try_at'], unique=False)


def downgrade() -> None:
    op.drop_table('pushes')
    op.drop_table('push_subscriptions')
    with op.batch_alter_table('feeds', schema=None) as batch_op:
        batch_op.drop_column('topic_url')
        batch_op.drop_column('hub_url')
