"""Answers that have no model in :mod:`smartrec.schemas` (the server builds them as dicts).

Unknown fields are ignored, so a newer server does not break an older client.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ModelVersion(BaseModel):
    version: str
    run_id: str | None = None
    aliases: list[str] = Field(default_factory=list)
    metrics: dict[str, Any] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    tags: dict[str, Any] = Field(default_factory=dict)
    #: Epoch milliseconds.
    created_at: int | None = None


class ModelsOut(BaseModel):
    model_name: str
    serving_version: str | None = None
    versions: list[ModelVersion]


class Promoted(BaseModel):
    champion: str
    serving_version: str | None = None


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    model_version: str | None = None
    feeds: dict[str, Any] = Field(default_factory=dict)
