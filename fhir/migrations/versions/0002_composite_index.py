"""composite search parameter index (sp_composite)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('sp_composite',
    sa.Column('rid', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('param', sa.String(length=64), nullable=False),
    sa.Column('a_system', sa.String(length=255), nullable=True),
    sa.Column('a_code', sa.String(length=255), nullable=True),
    sa.Column('b_system', sa.String(length=255), nullable=True),
    sa.Column('b_code', sa.String(length=255), nullable=True),
    sa.Column('b_unit', sa.String(length=255), nullable=True),
    sa.Column('b_num', sa.Float(precision=53), nullable=True),
    sa.Column('b_lo', sa.Float(precision=53), nullable=True),
    sa.Column('b_hi', sa.Float(precision=53), nullable=True),
    sa.Column('b_norm', sa.String(length=255), nullable=True)
    )
    with op.batch_alter_table('sp_composite', schema=None) as batch_op:
        batch_op.create_index('ix_sp_composite_lookup', ['param', 'a_code', 'a_system'], unique=False, postgresql_ops={})
        batch_op.create_index('ix_sp_composite_rid', ['rid'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('sp_composite', schema=None) as batch_op:
        batch_op.drop_index('ix_sp_composite_rid')
        batch_op.drop_index('ix_sp_composite_lookup', postgresql_ops={})

    op.drop_table('sp_composite')
