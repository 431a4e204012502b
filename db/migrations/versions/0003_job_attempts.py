"""job attempts, missing images: fencing of superseded job attempts and files gone since import (reliability)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('attempt', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('child_pgid', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('child_host', sa.String(length=200), nullable=True))
    with op.batch_alter_table('images', schema=None) as batch_op:
        batch_op.add_column(sa.Column('file_status', sa.String(length=16), server_default='present',
                                      nullable=False))
    # a job that was ever started had one attempt
    op.execute("UPDATE jobs SET attempt = 1 WHERE started_at IS NOT NULL")
    # evaluations left queued/running by a job that ended without running them (e.g. a cancelled
    # queued training) end with their job's status
    op.execute(
        "UPDATE evaluations SET status = (SELECT j.status FROM jobs j WHERE j.evaluation_id = evaluations.id"
        " ORDER BY j.id DESC LIMIT 1)"
        " WHERE status IN ('queued', 'running')"
        " AND EXISTS (SELECT 1 FROM jobs j WHERE j.evaluation_id = evaluations.id"
        "             AND j.status IN ('failed', 'cancelled'))"
        " AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.evaluation_id = evaluations.id"
        "                 AND j.status IN ('queued', 'running', 'succeeded'))"
    )


def downgrade() -> None:
    with op.batch_alter_table('images', schema=None) as batch_op:
        batch_op.drop_column('file_status')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('child_host')
        batch_op.drop_column('child_pgid')
        batch_op.drop_column('attempt')
