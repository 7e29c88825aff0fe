"""Entry point of the `pathways` console script."""

from pathways.cli import catalogue, engine, tokens  # noqa: F401  (each registers its commands)
from pathways.cli.app import app


def main() -> None:
    app()
