"""releases of a run + threshold as line bundles, and line results brought back

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'releases',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('run_id', sa.Integer(), nullable=False),
        sa.Column('threshold_id', sa.Integer(), nullable=True),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('path', sa.Text(), nullable=True),
        sa.Column('bundle_sha256', sa.String(length=64), nullable=True),
        sa.Column('info', sa.JSON(), nullable=False),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('note', sa.Text(), nullable=True),
        sa.Column('created_by', sa.String(length=100), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_releases_run_id_runs'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['threshold_id'], ['thresholds.id'], name=op.f('fk_releases_threshold_id_thresholds'),
                                ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_releases')),
    )
    op.create_index(op.f('ix_releases_run_id'), 'releases', ['run_id'], unique=False)
    op.create_index(op.f('ix_releases_bundle_sha256'), 'releases', ['bundle_sha256'], unique=False)
    op.create_table(
        'line_results',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('run_id', sa.Integer(), nullable=False),
        sa.Column('release_id', sa.Integer(), nullable=True),
        sa.Column('bundle_sha256', sa.String(length=64), nullable=False),
        sa.Column('threshold_id', sa.Integer(), nullable=True),
        sa.Column('path', sa.Text(), nullable=False),
        sa.Column('image_id', sa.Integer(), nullable=True),
        sa.Column('verdict', sa.String(length=8), nullable=False),
        sa.Column('score', sa.Float(), nullable=True),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('ms', sa.Float(), nullable=True),
        sa.Column('scored_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('imported_by', sa.String(length=100), nullable=False),
        sa.Column('imported_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['image_id'], ['images.id'], name=op.f('fk_line_results_image_id_images'),
                                ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['release_id'], ['releases.id'], name=op.f('fk_line_results_release_id_releases'),
                                ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_line_results_run_id_runs'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_line_results')),
        sa.UniqueConstraint('bundle_sha256', 'path', 'scored_at',
                            name=op.f('uq_line_results_bundle_sha256')),
    )
    op.create_index(op.f('ix_line_results_run_id'), 'line_results', ['run_id'], unique=False)
    op.create_index(op.f('ix_line_results_image_id'), 'line_results', ['image_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_line_results_image_id'), table_name='line_results')
    op.drop_index(op.f('ix_line_results_run_id'), table_name='line_results')
    op.drop_table('line_results')
    op.drop_index(op.f('ix_releases_bundle_sha256'), table_name='releases')
    op.drop_index(op.f('ix_releases_run_id'), table_name='releases')
    op.drop_table('releases')
