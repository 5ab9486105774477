"""The server with access control but without its audit, to tell in bench/access.py what the
decisions cost from what the AuditEvents cost. NEVER DEPLOY: it serves requests unaudited.

Same code as api.main; only the audit of reads and failures (api/audit.py AuditTrail) is
switched off. Imported only by `uvicorn bench.unaudited_app:app` from bench/access.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from api import audit as api_audit  # noqa: E402
from api.app import create_app  # noqa: E402

api_audit.AuditTrail._submit = staticmethod(lambda scope, status: None)  # type: ignore[method-assign]

app = create_app()
