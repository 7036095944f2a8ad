"""leases and claims: a feed polled by one worker at a time, an alert or digest sent by one sender

`feeds.lease_until` / `leased_by`: the scheduler leases a due feed (one atomic UPDATE … WHERE the lease
is free … RETURNING) before it enqueues its poll; a lease that outlives its poll (a killed worker) expires
and the feed is enqueued again. `deliveries` and `digests` get `claimed_until` / `claimed_by`: a sender
claims what it is about to send (PostgreSQL skips rows another sender has locked), so two senders never
send one alert or digest. Plain ALTER TABLE ADD COLUMN on both stores: no batch rebuild.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 04:30:00
"""

from alembic import op
import sqlalchemy as sa
import monitor.store.models


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

_HOLDERS = {"feeds": ("lease_until", "leased_by"), "deliveries": ("claimed_until", "claimed_by"), "digests": ("claimed_until", "claimed_by")}


def upgrade() -> None:
    for table, (until, holder) in _HOLDERS.items():
        op.add_column(table, sa.Column(until, monitor.store.models.UTCDateTime(timezone=True), nullable=True))
        op.add_column(table, sa.Column(holder, sa.String(length=100), nullable=True))


def downgrade() -> None:
    for table, (until, holder) in _HOLDERS.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column(holder)
            batch_op.drop_column(until)
