"""initial schema: resources, history, search indexes

Revision ID: 0001
Revises: 
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('conditional_key',
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('query', sa.String(length=1024), nullable=False),
    sa.Column('rid', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.PrimaryKeyConstraint('type', 'query')
    )
    with op.batch_alter_table('conditional_key', schema=None) as batch_op:
        batch_op.create_index('ix_conditional_key_rid', ['rid'], unique=False)

    op.create_table('resource',
    sa.Column('rid', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('last_updated', sa.Float(precision=53), nullable=False),
    sa.Column('deleted', sa.Boolean(), nullable=False),
    sa.Column('patient_id', sa.String(length=64), nullable=True),
    sa.Column('security', sa.Text(), nullable=True),
    sa.Column('content', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.PrimaryKeyConstraint('rid'),
    sa.UniqueConstraint('type', 'id', name='uq_resource_type_id')
    )
    with op.batch_alter_table('resource', schema=None) as batch_op:
        batch_op.create_index('ix_resource_patient', ['patient_id', 'type'], unique=False)
        batch_op.create_index('ix_resource_type_updated', ['type', 'last_updated'], unique=False)

    op.create_table('resource_history',
    sa.Column('hid', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('rid', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('last_updated', sa.Float(precision=53), nullable=False),
    sa.Column('method', sa.String(length=8), nullable=False),
    sa.Column('deleted', sa.Boolean(), nullable=False),
    sa.Column('content', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.PrimaryKeyConstraint('hid'),
    sa.UniqueConstraint('rid', 'version', name='uq_history_rid_version')
    )
    with op.batch_alter_table('resource_history', schema=None) as batch_op:
        batch_op.create_index('ix_history_type_updated', ['type', 'last_updated'], unique=False)
        batch_op.create_index('ix_history_updated', ['last_updated'], unique=False)

    op.create_table('sp_date',
    sa.Column('rid', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('param', sa.String(length=64), nullable=False),
    sa.Column('lo', sa.Float(precision=53), nullable=False),
    sa.Column('hi', sa.Float(precision=53), nullable=False)
    )
    with op.batch_alter_table('sp_date', schema=None) as batch_op:
        batch_op.create_index('ix_sp_date_lookup', ['param', 'lo', 'hi'], unique=False, postgresql_ops={})
        batch_op.create_index('ix_sp_date_rid', ['rid'], unique=False)

    op.create_table('sp_number',
    sa.Column('rid', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('param', sa.String(length=64), nullable=False),
    sa.Column('value', sa.Float(precision=53), nullable=False)
    )
    with op.batch_alter_table('sp_number', schema=None) as batch_op:
        batch_op.create_index('ix_sp_number_lookup', ['param', 'value'], unique=False, postgresql_ops={})
        batch_op.create_index('ix_sp_number_rid', ['rid'], unique=False)

    op.create_table('sp_quantity',
    sa.Column('rid', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('param', sa.String(length=64), nullable=False),
    sa.Column('value', sa.Float(precision=53), nullable=False),
    sa.Column('system', sa.String(length=255), nullable=True),
    sa.Column('code', sa.String(length=255), nullable=True),
    sa.Column('unit', sa.String(length=255), nullable=True)
    )
    with op.batch_alter_table('sp_quantity', schema=None) as batch_op:
        batch_op.create_index('ix_sp_quantity_lookup', ['param', 'value'], unique=False, postgresql_ops={})
        batch_op.create_index('ix_sp_quantity_rid', ['rid'], unique=False)

    op.create_table('sp_reference',
    sa.Column('rid', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('param', sa.String(length=64), nullable=False),
    sa.Column('target_type', sa.String(length=64), nullable=True),
    sa.Column('target_id', sa.String(length=64), nullable=True),
    sa.Column('url', sa.String(length=1024), nullable=True)
    )
    with op.batch_alter_table('sp_reference', schema=None) as batch_op:
        batch_op.create_index('ix_sp_reference_lookup', ['param', 'target_id', 'target_type'], unique=False, postgresql_ops={})
        batch_op.create_index('ix_sp_reference_rid', ['rid'], unique=False)

    op.create_table('sp_string',
    sa.Column('rid', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('param', sa.String(length=64), nullable=False),
    sa.Column('norm', sa.String(length=255), nullable=False),
    sa.Column('value', sa.String(length=255), nullable=False)
    )
    with op.batch_alter_table('sp_string', schema=None) as batch_op:
        batch_op.create_index('ix_sp_string_lookup', ['param', 'norm'], unique=False, postgresql_ops={'norm': 'varchar_pattern_ops'})
        batch_op.create_index('ix_sp_string_rid', ['rid'], unique=False)

    op.create_table('sp_token',
    sa.Column('rid', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('param', sa.String(length=64), nullable=False),
    sa.Column('system', sa.String(length=255), nullable=True),
    sa.Column('code', sa.String(length=255), nullable=True),
    sa.Column('text', sa.Text(), nullable=True)
    )
    with op.batch_alter_table('sp_token', schema=None) as batch_op:
        batch_op.create_index('ix_sp_token_lookup', ['param', 'code', 'system'], unique=False, postgresql_ops={})
        batch_op.create_index('ix_sp_token_rid', ['rid'], unique=False)

    op.create_table('sp_uri',
    sa.Column('rid', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('param', sa.String(length=64), nullable=False),
    sa.Column('value', sa.String(length=1024), nullable=False)
    )
    with op.batch_alter_table('sp_uri', schema=None) as batch_op:
        batch_op.create_index('ix_sp_uri_lookup', ['param', 'value'], unique=False, postgresql_ops={})
        batch_op.create_index('ix_sp_uri_rid', ['rid'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('sp_uri', schema=None) as batch_op:
        batch_op.drop_index('ix_sp_uri_rid')
        batch_op.drop_index('ix_sp_uri_lookup', postgresql_ops={})

    op.drop_table('sp_uri')
    with op.batch_alter_table('sp_token', schema=None) as batch_op:
        batch_op.drop_index('ix_sp_token_rid')
        batch_op.drop_index('ix_sp_token_lookup', postgresql_ops={})

    op.drop_table('sp_token')
    with op.batch_alter_table('sp_string', schema=None) as batch_op:
        batch_op.drop_index('ix_sp_string_rid')
        batch_op.drop_index('ix_sp_string_lookup', postgresql_ops={'norm': 'varchar_pattern_ops'})

    op.drop_table('sp_string')
    with op.batch_alter_table('sp_reference', schema=None) as batch_op:
        batch_op.drop_index('ix_sp_reference_rid')
        batch_op.drop_index('ix_sp_reference_lookup', postgresql_ops={})

    op.drop_table('sp_reference')
    with op.batch_alter_table('sp_quantity', schema=None) as batch_op:
        batch_op.drop_index('ix_sp_quantity_rid')
        batch_op.drop_index('ix_sp_quantity_lookup', postgresql_ops={})

    op.drop_table('sp_quantity')
    with op.batch_alter_table('sp_number', schema=None) as batch_op:
        batch_op.drop_index('ix_sp_number_rid')
        batch_op.drop_index('ix_sp_number_lookup', postgresql_ops={})

    op.drop_table('sp_number')
    with op.batch_alter_table('sp_date', schema=None) as batch_op:
        batch_op.drop_index('ix_sp_date_rid')
        batch_op.drop_index('ix_sp_date_lookup', postgresql_ops={})

    op.drop_table('sp_date')
    with op.batch_alter_table('resource_history', schema=None) as batch_op:
        batch_op.drop_index('ix_history_updated')
        batch_op.drop_index('ix_history_type_updated')

    op.drop_table('resource_history')
    with op.batch_alter_table('resource', schema=None) as batch_op:
        batch_op.drop_index('ix_resource_type_updated')
        batch_op.drop_index('ix_resource_patient')

    op.drop_table('resource')
    with op.batch_alter_table('conditional_key', schema=None) as batch_op:
        batch_op.drop_index('ix_conditional_key_rid')

    op.drop_table('conditional_key')
