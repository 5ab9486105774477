"""risk stratification: runs and each patient's last result (careplans/risk/models.py)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'risk_run',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('started', sa.Float(), nullable=False),
        sa.Column('finished', sa.Float(), nullable=True),
        sa.Column('as_of', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column('practice', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column('full', sa.Boolean(), nullable=False),
        sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column('watermark', sa.Float(), nullable=False),
        sa.Column('considered', sa.Integer(), nullable=False),
        sa.Column('created', sa.Integer(), nullable=False),
        sa.Column('updated', sa.Integer(), nullable=False),
        sa.Column('unchanged', sa.Integer(), nullable=False),
        sa.Column('code_version', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_table(
        'risk_state',
        sa.Column('patient_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('method', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('fingerprint', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('summary', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('as_of', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column('recheck_on', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=True),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('patient_id', 'method'),
    )
    op.create_index('ix_risk_state_recheck_on', 'risk_state', ['recheck_on'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_risk_state_recheck_on', table_name='risk_state')
    op.drop_table('risk_state')
    op.drop_table('risk_run')
