"""A deterministic synthetic family care network: organisations, staff and patient records.

Pure generation (no HTTP): `generate(seed, n_patients, as_of)` gives the network and a lazy
stream of patient records; `transaction()` wraps resources in a PUT transaction Bundle;
`write_ndjson()` writes Bulk Data style files. `api.synthetic.load` posts them to a server.
Sources of every rate and code: `data/SOURCES.md` and `careplans/data/codes/PROVENANCE.md`.
"""

from api.synthetic.generate import generate, patient_records, transaction, write_ndjson
from api.synthetic.network import Network, build_network
from api.synthetic.record import Record

__all__ = ["Network", "Record", "build_network", "generate", "patient_records", "transaction",
           "write_ndjson"]
