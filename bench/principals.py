"""Who the benchmarks sign in as: a GP of the network's largest practice (with some of its
patients and their Observations), and the tokens of the bench's three callers."""

from __future__ import annotations

import asyncpg

GP_CODES = ("R0260", "R0270", "R6300")  # SDS job roles of GPs (consent/data/sds-job-roles.csv)


async def gp_of_largest_practice(db_url: str, n: int
                                 ) -> tuple[str, list[str], list[str], str]:
    """The GP (Practitioner id) of the largest practice, `n` of its patients, `n` of their
    Observations, and the practice (Organization id)."""
    conn = await asyncpg.connect(db_url)
    try:
        practice = await conn.fetchval(
            "SELECT target_id FROM sp_reference WHERE param='general-practitioner' AND "
            "target_type='Organization' GROUP BY 1 ORDER BY count(*) DESC LIMIT 1")
        gp = await conn.fetchval(
            "SELECT p.target_id FROM resource r "
            "JOIN sp_reference o ON o.rid=r.rid AND o.param='organization' AND o.target_id=$1 "
            "JOIN sp_reference p ON p.rid=r.rid AND p.param='practitioner' "
            "JOIN sp_token c ON c.rid=r.rid AND c.param='role' AND c.code = ANY($2::text[]) "
            "WHERE r.type='PractitionerRole' AND NOT r.deleted LIMIT 1", practice, list(GP_CODES))
        patients = [r["id"] for r in await conn.fetch(
            "SELECT r.id FROM resource r JOIN sp_reference g ON g.rid=r.rid AND "
            "g.param='general-practitioner' AND g.target_id=$1 WHERE r.type='Patient' AND NOT "
            "r.deleted ORDER BY random() LIMIT $2", practice, n)]
        observations = [r["id"] for r in await conn.fetch(
            "SELECT r.id FROM resource r WHERE r.type='Observation' AND NOT r.deleted AND "
            "r.patient_id = ANY($1::text[]) ORDER BY random() LIMIT $2", patients, n)]
    finally:
        await conn.close()
    if gp is None:
        raise SystemExit(f"no GP found at Organization/{practice}")
    return gp, patients, observations, practice


async def tokens(db_url: str, port: int, gp: str) -> dict[str, str]:
    """The bearer token of each bench server's caller (bench/access.py), signed with the keys
    in the server's database; `open` takes any token."""
    from consent.grants import operator_token
    from fhir.db import Database

    base = f"http://127.0.0.1:{port}/fhir"
    db = Database(db_url, pool_size=1)
    try:
        gp_token = await operator_token(db, fhir_base=base, client_id="carenet-bench",
                                        scope="user/*.cruds openid fhirUser", lifetime=7200,
                                        user=f"Practitioner/{gp}")
        operator = await operator_token(db, fhir_base=base, client_id="carenet-bench",
                                        lifetime=7200)
    finally:
        await db.dispose()
    return {"open": "open", "gp": gp_token, "gp-unaudited": gp_token, "operator": operator}
