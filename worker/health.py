"""A tiny HTTP health endpoint for orchestrators (Kubernetes probes, load balancers).

GET /healthz answers 200 when the Temporal frontend answers its health check, 503 otherwise.
One route, so plain asyncio streams rather than a web framework in the worker process.
"""

from __future__ import annotations

import asyncio
import json

from temporalio.client import Client

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


async def serve_health(settings: Settings, client: Client) -> HealthServer:
    """Start the endpoint on settings.health_port (0: disabled)."""
    if not settings.health_port:
        return HealthServer(None)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), timeout=5)
            path = request.split(b" ")[1] if request.count(b" ") >= 2 else b""
            if path != b"/healthz":
                status, body = "404 Not Found", {"status": "not-found"}
            elif await _healthy(client):
                status, body = "200 OK", {"status": "ok", "task_queue": settings.task_queue}
            else:
                status, body = "503 Service Unavailable", {"status": "temporal-unreachable"}
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
