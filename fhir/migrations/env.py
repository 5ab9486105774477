"""Alembic environment: runs on the connection `fhir.migrate` hands over (sync or async)."""

from alembic import context

import careplans.risk.models  # noqa: F401  (risk stratification tables, same metadata)
import careplans.worklist.models  # noqa: F401  (worklist tables, same metadata)
import consent.oauth_schema  # noqa: F401  (its tables share the metadata)
from fhir.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
