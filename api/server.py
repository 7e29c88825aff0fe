"""`pathways api`: serve the HTTP API with uvicorn until SIGTERM or Ctrl-C."""

from __future__ import annotations

import uvicorn

from api.app import create_app
from pathways.settings import Settings


async def serve(settings: Settings) -> int:
    """Run the API on settings.api_host:api_port; returns the exit status."""
    config = uvicorn.Config(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,
        proxy_headers=True,
        timeout_graceful_shutdown=3,  # open event streams (the console's live feed) end on stop
    )
    server = uvicorn.Server(config)
    await server.serve()
    return 0 if server.started else 1
