"""bulk export jobs (fhir/operations/export_jobs.py)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0011'
# The lead rewires the chain at merge.
down_revision = '0010'
branch_labels = None
depends_on = None

Text = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table(
        'export_job',
        sa.Column('id', Text(length=64), nullable=False),
        sa.Column('client', Text(length=256), nullable=False),
        sa.Column('request', Text(length=4096), nullable=False),
        sa.Column('status', Text(length=16), nullable=False),
        sa.Column('created', sa.Float(), nullable=False),
        sa.Column('transaction_time', sa.Float(), nullable=True),
        sa.Column('counts', Text(length=100000), nullable=False),
        sa.Column('opted_out', sa.Integer(), nullable=False),
        sa.Column('progress', Text(length=256), nullable=True),
        sa.Column('error', Text(length=4096), nullable=True),
        sa.Column('heartbeat', sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_export_job_client', 'export_job', ['client'])


def downgrade() -> None:
    op.drop_index('ix_export_job_client', table_name='export_job')
    op.drop_table('export_job')
