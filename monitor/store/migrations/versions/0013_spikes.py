"""coverage spikes: the days a topic, vendor or country drew far more stories than usual, and their outbox

Revision ID: 0013
Revises: 0011
Create Date: 2026-11-29 07:40:00
"""

from alembic import op
import sqlalchemy as sa
import monitor.store.models


revision = '0013'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('spikes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('topic', sa.String(length=100), nullable=False),
    sa.Column('dimension', sa.String(length=16), nullable=False),
    sa.Column('value', sa.String(length=200), nullable=False),
    sa.Column('day', sa.String(length=10), nullable=False),
    sa.Column('stories', sa.Integer(), nullable=False),
    sa.Column('baseline', sa.Float(), nullable=False),
    sa.Column('p_value', sa.Float(), nullable=False),
    sa.Column('detected_at', monitor.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('topic', 'dimension', 'value', 'day', name='uq_spikes_target')
    )
    with op.batch_alter_table('spikes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_spikes_day'), ['day'], unique=False)

    op.create_table('spike_deliveries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('spike_id', sa.Integer(), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('route', sa.String(length=100), nullable=False),
    sa.Column('topic', sa.String(length=100), nullable=False),
    sa.Column('status', sa.String(length=8), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('due_at', monitor.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', monitor.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('sent_at', monitor.store.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('digest_day', sa.String(length=10), nullable=True),
    sa.Column('claimed_until', monitor.store.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('claimed_by', sa.String(length=100), nullable=True),
    sa.ForeignKeyConstraint(['spike_id'], ['spikes.id'], name='fk_spike_deliveries_spike_id_spikes', ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('spike_id', 'channel', 'route', name='uq_spike_deliveries_target')
    )
    with op.batch_alter_table('spike_deliveries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_spike_deliveries_spike_id'), ['spike_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_spike_deliveries_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_spike_deliveries_due_at'), ['due_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_spike_deliveries_digest_day'), ['digest_day'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('spike_deliveries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_spike_deliveries_digest_day'))
        batch_op.drop_index(batch_op.f('ix_spike_deliveries_due_at'))
        batch_op.drop_index(batch_op.f('ix_spike_deliveries_status'))
        batch_op.drop_index(batch_op.f('ix_spike_deliveries_spike_id'))
    op.drop_table('spike_deliveries')
    with op.batch_alter_table('spikes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_spikes_day'))
    op.drop_table('spikes')
