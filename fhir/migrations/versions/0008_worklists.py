"""worklists: item keys and the event outbox (careplans/worklist/models.py)

Revision ID: 0008
Revises: 0006
Create Date: 2026-12-04
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0008'
# The lead rewires the chain at merge (after 0007 of another branch).
down_revision = '0007'
branch_labels = None
depends_on = None

Text = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table(
        'worklist_item',
        sa.Column('rule', Text(length=32), nullable=False),
        sa.Column('patient_id', Text(length=64), nullable=False),
        sa.Column('period', Text(length=128), nullable=False),
        sa.Column('task_id', Text(length=64), nullable=False),
        sa.Column('status', Text(length=16), nullable=False),
        sa.Column('open', sa.Boolean(), nullable=False),
        sa.Column('owner', Text(length=128), nullable=True),
        sa.Column('team', Text(length=64), nullable=True),
        sa.Column('priority_rank', sa.Integer(), nullable=False),
        sa.Column('due', Text(length=10), nullable=False),
        sa.Column('created', sa.Float(), nullable=False),
        sa.Column('closed', sa.Float(), nullable=True),
        sa.Column('done_on', Text(length=10), nullable=True),
        sa.PrimaryKeyConstraint('rule', 'patient_id', 'period'),
    )
    op.create_index('ix_worklist_item_owner', 'worklist_item', ['owner', 'open'])
    op.create_index('ix_worklist_item_team', 'worklist_item', ['team', 'open'])
    op.create_index('ix_worklist_item_task', 'worklist_item', ['task_id'], unique=True)
    op.create_table(
        'worklist_outbox',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('patient_id', Text(length=64), nullable=False),
        sa.Column('reason', Text(length=160), nullable=False),
        sa.Column('created', sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )


def downgrade() -> None:
    op.drop_table('worklist_outbox')
    op.drop_index('ix_worklist_item_task', table_name='worklist_item')
    op.drop_index('ix_worklist_item_team', table_name='worklist_item')
    op.drop_index('ix_worklist_item_owner', table_name='worklist_item')
    op.drop_table('worklist_item')
