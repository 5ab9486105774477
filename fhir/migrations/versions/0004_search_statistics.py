"""search planning: index-only candidate sets, statistics of reference targets (PostgreSQL)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25

- Every index table's lookup index also holds the row id (INCLUDE rid): the rows matching a
  condition (a practice's patients, birth dates before 1950) come from the index alone, not
  from thousands of table pages.
- Statistics of (param, target_type, target_id) together in sp_reference: per column, the
  planner multiplied three selectivities and expected ~330 patients of a practice that has
  6,000, then drove the search from them. The most common combinations make it exact.
  Statistics objects are not part of SQLAlchemy's metadata (fhir/schema.py): only here.

SQLite has neither INCLUDE nor these statistics: nothing changes there.
"""

from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

LOOKUPS = {
    'sp_token': (['param', 'code', 'system'], {}),
    'sp_string': (['param', 'norm'], {'norm': 'varchar_pattern_ops'}),
    'sp_date': (['param', 'lo', 'hi'], {}),
    'sp_reference': (['param', 'target_id', 'target_type'], {}),
    'sp_quantity': (['param', 'value'], {}),
    'sp_uri': (['param', 'value'], {}),
    'sp_number': (['param', 'value'], {}),
    'sp_composite': (['param', 'a_code', 'a_system'], {}),
}
STATISTICS = 'st_sp_reference_target'


def _rebuild(include: list[str]) -> None:
    for table, (columns, ops) in LOOKUPS.items():
        name = f'ix_{table}_lookup'
        op.drop_index(name, table_name=table)
        op.create_index(name, table, columns, unique=False, postgresql_ops=ops,
                        postgresql_include=include)


def upgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    _rebuild(['rid'])
    op.execute(f'CREATE STATISTICS IF NOT EXISTS {STATISTICS} (mcv) '
               'ON param, target_type, target_id FROM sp_reference')
    op.execute('ANALYZE sp_reference')


def downgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    op.execute(f'DROP STATISTICS IF EXISTS {STATISTICS}')
    _rebuild([])
