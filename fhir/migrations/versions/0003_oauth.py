"""authorisation server: clients, codes, refresh tokens, revocations, launches, signing keys

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('oauth_client',
    sa.Column('client_id', sa.String(length=64), nullable=False),
    sa.Column('auth_method', sa.String(length=32), nullable=False),
    sa.Column('metadata', sa.Text(), nullable=False),
    sa.Column('created_at', sa.Float(precision=53), nullable=False),
    sa.PrimaryKeyConstraint('client_id')
    )
    op.create_table('oauth_code',
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('client_id', sa.String(length=64), nullable=False),
    sa.Column('redirect_uri', sa.String(length=2048), nullable=False),
    sa.Column('code_challenge', sa.String(length=128), nullable=False),
    sa.Column('grant', sa.Text(), nullable=False),
    sa.Column('expires_at', sa.Float(precision=53), nullable=False),
    sa.Column('used_at', sa.Float(precision=53), nullable=True),
    sa.Column('access_jti', sa.String(length=64), nullable=True),
    sa.Column('family', sa.String(length=64), nullable=True),
    sa.PrimaryKeyConstraint('code_hash')
    )
    with op.batch_alter_table('oauth_code', schema=None) as batch_op:
        batch_op.create_index('ix_oauth_code_expires', ['expires_at'], unique=False)

    op.create_table('oauth_refresh',
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('family', sa.String(length=64), nullable=False),
    sa.Column('client_id', sa.String(length=64), nullable=False),
    sa.Column('grant', sa.Text(), nullable=False),
    sa.Column('expires_at', sa.Float(precision=53), nullable=False),
    sa.Column('used_at', sa.Float(precision=53), nullable=True),
    sa.Column('revoked', sa.Boolean(), nullable=False),
    sa.Column('access_jti', sa.String(length=64), nullable=True),
    sa.Column('access_expires_at', sa.Float(precision=53), nullable=True),
    sa.PrimaryKeyConstraint('token_hash')
    )
    with op.batch_alter_table('oauth_refresh', schema=None) as batch_op:
        batch_op.create_index('ix_oauth_refresh_expires', ['expires_at'], unique=False)
        batch_op.create_index('ix_oauth_refresh_family', ['family'], unique=False)

    op.create_table('oauth_revoked',
    sa.Column('jti', sa.String(length=64), nullable=False),
    sa.Column('expires_at', sa.Float(precision=53), nullable=False),
    sa.PrimaryKeyConstraint('jti')
    )
    with op.batch_alter_table('oauth_revoked', schema=None) as batch_op:
        batch_op.create_index('ix_oauth_revoked_expires', ['expires_at'], unique=False)

    op.create_table('oauth_assertion',
    sa.Column('client_id', sa.String(length=64), nullable=False),
    sa.Column('jti', sa.String(length=255), nullable=False),
    sa.Column('expires_at', sa.Float(precision=53), nullable=False),
    sa.PrimaryKeyConstraint('client_id', 'jti')
    )
    with op.batch_alter_table('oauth_assertion', schema=None) as batch_op:
        batch_op.create_index('ix_oauth_assertion_expires', ['expires_at'], unique=False)

    op.create_table('oauth_launch',
    sa.Column('launch_hash', sa.String(length=64), nullable=False),
    sa.Column('user_ref', sa.String(length=128), nullable=False),
    sa.Column('patient', sa.String(length=64), nullable=True),
    sa.Column('encounter', sa.String(length=64), nullable=True),
    sa.Column('expires_at', sa.Float(precision=53), nullable=False),
    sa.PrimaryKeyConstraint('launch_hash')
    )
    op.create_table('oauth_signing_key',
    sa.Column('kid', sa.String(length=128), nullable=False),
    sa.Column('alg', sa.String(length=16), nullable=False),
    sa.Column('jwk', sa.Text(), nullable=False),
    sa.Column('created_at', sa.Float(precision=53), nullable=False),
    sa.PrimaryKeyConstraint('kid')
    )


def downgrade() -> None:
    op.drop_table('oauth_signing_key')
    op.drop_table('oauth_launch')
    with op.batch_alter_table('oauth_assertion', schema=None) as batch_op:
        batch_op.drop_index('ix_oauth_assertion_expires')
    op.drop_table('oauth_assertion')
    with op.batch_alter_table('oauth_revoked', schema=None) as batch_op:
        batch_op.drop_index('ix_oauth_revoked_expires')
    op.drop_table('oauth_revoked')
    with op.batch_alter_table('oauth_refresh', schema=None) as batch_op:
        batch_op.drop_index('ix_oauth_refresh_family')
        batch_op.drop_index('ix_oauth_refresh_expires')
    op.drop_table('oauth_refresh')
    with op.batch_alter_table('oauth_code', schema=None) as batch_op:
        batch_op.drop_index('ix_oauth_code_expires')
    op.drop_table('oauth_code')
    op.drop_table('oauth_client')
