"""the access log's index rows under keys of their own ("AuditEvent.patient")

Revision ID: 0005_audit_keys
Revises: 0004
Create Date: 2026-12-04

AuditEvents shared the index keys of every other type ("patient", "date", "agent"...), so a
search such as `Observation?patient=X` waded through every AuditEvent filed under X, and
slowed as the log grew (issue 16). fhir.registry.index_key now gives AuditEvent's rows keys
of their own; this renames the rows already stored. (A data change only: the schema is the
same. The id is not a plain number so that it does not collide with another branch's 0005.)
"""

from alembic import op

revision = '0005_audit_keys'
down_revision = '0004'
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
