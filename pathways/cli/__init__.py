"""Entry point of the `pathways` console script."""

import importlib

from pathways.cli.app import app

# Each module registers its own subcommands on `app` when imported.
for _module in ("catalogue", "engine", "tokens"):
    try:
        importlib.import_module(f"pathways.cli.{_module}")
    except ModuleNotFoundError as error:  # a command group not written yet
        if error.name != f"pathways.cli.{_module}":
            raise


def main() -> None:
    app()
