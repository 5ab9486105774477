"""The storage schema: current resources, all versions, one index table per parameter type.

Alembic migrations in `fhir/migrations/versions/` create and change these tables; this module
is what queries are built from. `tests/fhir/test_migrations.py` keeps the two in step.
Times are epoch seconds (UTC) as doubles, the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

metadata = sa.MetaData()

RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# JSONB on PostgreSQL, JSON text on SQLite; values pass through as JSON text (see db.py).
Content = sa.JSON().with_variant(JSONB(), "postgresql")

resource = sa.Table(
    "resource",
    metadata,
    sa.Column("rid", RowId, primary_key=True, autoincrement=True),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("id", sa.String(64), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("last_updated", sa.Float(precision=53), nullable=False),
    sa.Column("deleted", sa.Boolean, nullable=False, default=False),
    sa.Column("patient_id", sa.String(64), nullable=True),
    sa.Column("security", sa.Text, nullable=True),
    sa.Column("content", Content, nullable=True),
    sa.UniqueConstraint("type", "id", name="uq_resource_type_id"),
    sa.Index("ix_resource_patient", "patient_id", "type"),
    sa.Index("ix_resource_type_updated", "type", "last_updated"),
)

history = sa.Table(
    "resource_history",
    metadata,
    sa.Column("hid", RowId, primary_key=True, autoincrement=True),
    sa.Column("rid", RowId, nullable=False),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("id", sa.String(64), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("last_updated", sa.Float(precision=53), nullable=False),
    sa.Column("method", sa.String(8), nullable=False),
    sa.Column("deleted", sa.Boolean, nullable=False, default=False),
    sa.Column("content", Content, nullable=True),
    sa.UniqueConstraint("rid", "version", name="uq_history_rid_version"),
    sa.Index("ix_history_type_updated", "type", "last_updated"),
    sa.Index("ix_history_updated", "last_updated"),
)

# Holds the normalised If-None-Exist query of each conditional create: the unique key makes
# the database, not a check-then-insert, decide which of many concurrent creates wins.
conditional_key = sa.Table(
    "conditional_key",
    metadata,
    sa.Column("type", sa.String(64), primary_key=True),
    sa.Column("query", sa.String(1024), primary_key=True),
    sa.Column("rid", RowId, nullable=False),
    sa.Index("ix_conditional_key_rid", "rid"),
)


def _index_table(name: str, *columns: sa.Column, lookup: tuple[str, ...],
                 pattern: str | None = None) -> sa.Table:
    # `pattern`: a column searched by prefix (LIKE 'abc%'), indexed for it on PostgreSQL.
    ops = {pattern: "varchar_pattern_ops"} if pattern else {}
    return sa.Table(
        f"sp_{name}",
        metadata,
        sa.Column("rid", RowId, nullable=False),
        sa.Column("param", sa.String(64), nullable=False),
        *columns,
        sa.Index(f"ix_sp_{name}_rid", "rid"),
        # With the row id (PostgreSQL): the rows meeting a condition, read from the index alone.
        sa.Index(f"ix_sp_{name}_lookup", "param", *lookup, postgresql_ops=ops,
                 postgresql_include=["rid"]),
    )


# *_hash: SHA-256 (hex) of a value longer than its column, which holds its start; NULL when
# the value fits (fhir/index.py `finish`, migration 0005).
sp_token = _index_table(
    "token",
    sa.Column("system", sa.String(255)),
    sa.Column("code", sa.String(255)),
    sa.Column("text", sa.Text),
    sa.Column("system_hash", sa.String(64)),
    sa.Column("code_hash", sa.String(64)),
    lookup=("code", "system"),
)
sp_string = _index_table(
    "string",
    sa.Column("norm", sa.String(255), nullable=False),
    sa.Column("value", sa.String(255), nullable=False),
    sa.Column("value_hash", sa.String(64)),
    lookup=("norm",),
    pattern="norm",
)
sp_date = _index_table(
    "date",
    sa.Column("lo", sa.Float(precision=53), nullable=False),
    sa.Column("hi", sa.Float(precision=53), nullable=False),
    lookup=("lo", "hi"),
)
sp_reference = _index_table(
    "reference",
    sa.Column("target_type", sa.String(64)),
    sa.Column("target_id", sa.String(64)),
    sa.Column("url", sa.String(1024)),
    lookup=("target_id", "target_type"),
)
sp_quantity = _index_table(
    "quantity",
    sa.Column("value", sa.Float(precision=53), nullable=False),
    sa.Column("system", sa.String(255)),
    sa.Column("code", sa.String(255)),
    sa.Column("unit", sa.String(255)),
    lookup=("value",),
)
sp_uri = _index_table("uri", sa.Column("value", sa.String(1024), nullable=False),
                      sa.Column("value_hash", sa.String(64)), lookup=("value",))
sp_number = _index_table(
    "number", sa.Column("value", sa.Float(precision=53), nullable=False), lookup=("value",)
)
# Composite parameters of two components, one row per pair taken from the same element: the
# first component token-like (a reference stores target type/id in a_system/a_code), the second
# in the columns of its type: token b_system/b_code, quantity b_num/b_system/b_code/b_unit,
# date b_lo/b_hi, string b_norm, number b_num.
sp_composite = _index_table(
    "composite",
    sa.Column("a_system", sa.String(255)),
    sa.Column("a_code", sa.String(255)),
    sa.Column("b_system", sa.String(255)),
    sa.Column("b_code", sa.String(255)),
    sa.Column("b_unit", sa.String(255)),
    sa.Column("b_num", sa.Float(precision=53)),
    sa.Column("b_lo", sa.Float(precision=53)),
    sa.Column("b_hi", sa.Float(precision=53)),
    sa.Column("b_norm", sa.String(255)),
    lookup=("a_code", "a_system"),
)

# Positions (Location.position, WGS84 degrees) for the special parameter `near`
# (https://hl7.org/fhir/R4/location.html#positional; fhir/search/near.py): the lookup index
# answers the bounding box, the exact haversine distance is computed on the rows inside it.
sp_position = _index_table(
    "position",
    sa.Column("lat", sa.Float(precision=53), nullable=False),
    sa.Column("lon", sa.Float(precision=53), nullable=False),
    lookup=("lat", "lon"),
)

INDEX_TABLES: dict[str, sa.Table] = {
    "token": sp_token,
    "string": sp_string,
    "date": sp_date,
    "reference": sp_reference,
    "quantity": sp_quantity,
    "uri": sp_uri,
    "number": sp_number,
    "composite": sp_composite,
    "position": sp_position,
}
