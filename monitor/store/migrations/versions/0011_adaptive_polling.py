"""adaptive polling: each feed's chosen interval, why, its own bounds and its document's hints

`feeds.poll_interval` / `poll_reason`: the interval chosen after the last poll (monitor/cadence.py) and why,
shown by `monitor status`; `min_interval_seconds` / `max_interval_seconds`: the feed's bounds from feeds.yaml
(null: the settings'); `poll_hints`: the feed document's ttl and sy:updatePeriod, kept for the polls that
answer 304. Plain ALTER TABLE ADD COLUMN on both stores: no batch rebuild.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29 07:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

_COLUMNS = (
    ("min_interval_seconds", sa.Integer),
    ("max_interval_seconds", sa.Integer),
    ("poll_interval", sa.Integer),
    ("poll_reason", sa.Text),
    ("poll_hints", sa.JSON),
)


def upgrade() -> None:
    for name, kind in _COLUMNS:
        op.add_column("feeds", sa.Column(name, kind(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("feeds", schema=None) as batch_op:
        for name, _ in reversed(_COLUMNS):
            batch_op.drop_column(name)
