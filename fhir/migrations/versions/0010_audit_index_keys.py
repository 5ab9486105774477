"""the access log's index rows under keys of their own ("AuditEvent.patient")

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04

AuditEvents shared the index keys of every other type ("patient", "date", "agent"...), so a
search such as `Observation?patient=X` waded through every AuditEvent filed under X, and
slowed as the log grew (issue 16). fhir.registry.index_key now gives AuditEvent's rows keys
of their own; this renames the rows already stored. (A data change only: the schema is the
same. Rows that migration 0005 indexed again from the stored JSON already carry the new keys,
and are left as they are; the hash columns 0005 added depend on the values only.)
"""

from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

TABLES = ('sp_token', 'sp_string', 'sp_date', 'sp_reference', 'sp_quantity', 'sp_uri',
          'sp_number', 'sp_composite')
PREFIX = 'AuditEvent.'


def upgrade() -> None:
    for table in TABLES:
        op.execute(f"UPDATE {table} SET param = '{PREFIX}' || param "
                   f"WHERE rid IN (SELECT rid FROM resource WHERE type = 'AuditEvent') "
                   f"AND param NOT LIKE '{PREFIX}%'")


def downgrade() -> None:
    for table in TABLES:
        op.execute(f"UPDATE {table} SET param = substr(param, {len(PREFIX) + 1}) "
                   f"WHERE param LIKE '{PREFIX}%'")
