"""Dependencies, declared once as Annotated aliases.

All are `async def`: FastAPI runs a plain `def` dependency in a worker thread, which costs
more than the dependency itself on every request.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from api.access import AccessDep
from api.repository import Repository
from api.settings import Settings
from fhir.db import Database


async def get_db(request: Request) -> Database:
    return request.app.state.db


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


DbDep = Annotated[Database, Depends(get_db)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


async def get_repository(access: AccessDep, db: DbDep) -> Repository:
    """The request's one door to the record (api/repository.py)."""
    return Repository(access, db)


RepositoryDep = Annotated[Repository, Depends(get_repository)]
