"""exact matches on long values: hashes beside the cut index values

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04

Token codes and systems (255 characters), string values (255) and uris (1,024) are cut to
their columns; a value longer than that was stored but never found by an exact search, and a
conditional create on it made a duplicate. Each gets a *_hash column: the SHA-256 of the
whole value when it was cut, NULL otherwise (fhir/index.py `finish`).

Rows already stored with a value at the cut length may have been cut: their resources are
indexed again from the stored JSON for these three tables. Conditional-create keys of 1,024
characters were cut queries: they are dropped (a key is only a lock; the search decides, and
the next conditional create takes a key in the new form).
"""

import json

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

COLUMNS = {'sp_token': ['system_hash', 'code_hash'], 'sp_string': ['value_hash'],
           'sp_uri': ['value_hash']}
# The columns these tables have from this revision on, after rid (the rows `finish` makes).
ROWS = {'token': ('sp_token', ['param', 'system', 'code', 'text', 'system_hash', 'code_hash']),
        'string': ('sp_string', ['param', 'norm', 'value', 'value_hash']),
        'uri': ('sp_uri', ['param', 'value', 'value_hash'])}
MAYBE_CUT = ("SELECT rid FROM sp_token WHERE length(code) >= 255 OR length(system) >= 255 "
             "UNION SELECT rid FROM sp_string WHERE length(value) >= 255 "
             "UNION SELECT rid FROM sp_uri WHERE length(value) >= 1024")


def upgrade() -> None:
    for table, names in COLUMNS.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            for name in names:
                batch_op.add_column(sa.Column(name, sa.String(length=64), nullable=True))
    _reindex_cut_values()
    op.execute("DELETE FROM conditional_key WHERE length(query) >= 1024")


def _reindex_cut_values() -> None:
    from fhir.index import extract, finish
    from fhir.registry import registry

    bind = op.get_bind()
    rids = [row[0] for row in bind.execute(sa.text(MAYBE_CUT))]
    for rid in rids:
        content = bind.execute(sa.text("SELECT content FROM resource WHERE rid = :rid "
                                       "AND deleted = false"), {"rid": rid}).scalar()
        if content is None:
            continue
        body = json.loads(content) if isinstance(content, (str, bytes)) else content
        rows = extract(body, registry())
        for kind, (table, columns) in ROWS.items():
            bind.execute(sa.text(f"DELETE FROM {table} WHERE rid = :rid"), {"rid": rid})
            values = [dict(zip(['rid', *columns], (rid, *row), strict=True))
                      for row in finish(kind, rows[kind])]
            if values:
                names = ', '.join(['rid', *columns])
                marks = ', '.join(f':{c}' for c in ['rid', *columns])
                bind.execute(sa.text(f"INSERT INTO {table} ({names}) VALUES ({marks})"), values)


def downgrade() -> None:
    for table, names in COLUMNS.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            for name in names:
                batch_op.drop_column(name)
