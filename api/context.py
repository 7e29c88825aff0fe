"""What routes share, set once on the app by `create_app`: settings, engine gateway, stores."""

from __future__ import annotations

from fastapi import Request

from activities.store import EventStore
from api.gateway import Gateway
from api.idempotency import IdempotencyKeys
from pathways.catalogue import Catalogue
from pathways.settings import Settings


def settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def gateway(request: Request) -> Gateway:
    return request.app.state.gateway  # type: ignore[no-any-return]


def catalogue(request: Request) -> Catalogue:
    return request.app.state.catalogue  # type: ignore[no-any-return]


def store(request: Request) -> EventStore:
    return request.app.state.store  # type: ignore[no-any-return]


def idempotency(request: Request) -> IdempotencyKeys:
    return request.app.state.idempotency  # type: ignore[no-any-return]
