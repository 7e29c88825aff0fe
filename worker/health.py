"""A tiny HTTP health endpoint for orchestrators (Kubernetes probes, load balancers).

GET /healthz answers 200 when the Temporal frontend answers its health check, 503 otherwise.
An event-store outage is a detail, not a failure ("status": "degraded", 200): pathways keep
running and keep their batches, so restarting the worker would not help.
One route, so plain asyncio streams rather than a web framework in the worker process.
"""

from __future__ import annotations

import asyncio
import json

from temporalio.client import Client

from activities.pathway_activities import StoreStatus
from pathways.settings import Settings


class HealthServer:
    def __init__(self, server: asyncio.Server | None) -> None:
        self._server = server

    async def shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


async def _healthy(client: Client) -> bool:
    try:
        return await asyncio.wait_for(client.service_client.check_health(), timeout=2)
    except Exception:  # any failure to reach the frontend means unhealthy
        return False


def health_body(
    healthy: bool, settings: Settings, store: StoreStatus | None
) -> tuple[str, dict[str, object]]:
    """Status line and JSON body of /healthz."""
    if not healthy:
        return "503 Service Unavailable", {"status": "temporal-unreachable"}
    detail = store.detail() if store is not None else {"event_store": "unknown"}
    status = "ok" if detail["event_store"] != "unavailable" else "degraded"
    return "200 OK", {"status": status, "task_queue": settings.task_queue, **detail}


async def serve_health(
    settings: Settings, client: Client, store: StoreStatus | None = None
) -> HealthServer:
    """Start the endpoint on settings.health_port (0: disabled)."""
    if not settings.health_port:
        return HealthServer(None)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), timeout=5)
            path = request.split(b" ")[1] if request.count(b" ") >= 2 else b""
            body: dict[str, object]
            if path != b"/healthz":
                status, body = "404 Not Found", {"status": "not-found"}
            else:
                status, body = health_body(await _healthy(client), settings, store)
            payload = json.dumps(body).encode()
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode() + payload
            )
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, settings.metrics_host, settings.health_port)
    return HealthServer(server)
