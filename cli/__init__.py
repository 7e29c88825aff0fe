"""Entry point of the `pathways` console script."""

from cli import catalogue, coordinator, engine, settle, simulate, tokens, webhooks  # noqa: F401  (each registers its commands)
from cli.app import app


def main() -> None:
    app()
