"""pages: server-side sessions of the back-end-for-front-end (web/sessions.py)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('web_session',
    sa.Column('id_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.Float(precision=53), nullable=False),
    sa.Column('seen_at', sa.Float(precision=53), nullable=False),
    sa.Column('data', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id_hash')
    )
    op.create_index('ix_web_session_seen_at', 'web_session', ['seen_at'])


def downgrade() -> None:
    op.drop_index('ix_web_session_seen_at', table_name='web_session')
    op.drop_table('web_session')
