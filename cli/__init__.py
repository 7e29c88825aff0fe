"""Entry point of the `pathways` console script."""

from cli import (  # noqa: F401  (each registers its commands)
    catalogue,
    clients,
    coordinator,
    engine,
    report,
    settle,
    simulate,
    tokens,
    webhooks,
)
from cli.app import app


def main() -> None:
    app()
