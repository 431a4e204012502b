"""where a job attempt runs: the executor (local worker or a Ray cluster), its id there, the node and GPU

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('executor', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('external_id', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('node', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('gpu', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('gpu')
        batch_op.drop_column('node')
        batch_op.drop_column('external_id')
        batch_op.drop_column('executor')
