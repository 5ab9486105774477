"""position index for the special search parameter `near` (sp_position)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04

Location.position in WGS84 degrees, one row per position; the lookup index (param, lat, lon)
answers the bounding box of a `near` search (https://hl7.org/fhir/R4/location.html#positional).
"""

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('sp_position',
    sa.Column('rid', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('param', sa.String(length=64), nullable=False),
    sa.Column('lat', sa.Float(precision=53), nullable=False),
    sa.Column('lon', sa.Float(precision=53), nullable=False)
    )
    with op.batch_alter_table('sp_position', schema=None) as batch_op:
        batch_op.create_index('ix_sp_position_lookup', ['param', 'lat', 'lon'], unique=False,
                              postgresql_ops={}, postgresql_include=['rid'])
        batch_op.create_index('ix_sp_position_rid', ['rid'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('sp_position', schema=None) as batch_op:
        batch_op.drop_index('ix_sp_position_rid')
        batch_op.drop_index('ix_sp_position_lookup', postgresql_ops={})
    op.drop_table('sp_position')
