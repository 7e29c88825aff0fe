"""The catalogue shipped with the package is valid, and is not empty."""

from __future__ import annotations

from typer.testing import CliRunner

from cli import app
from pathways.settings import SHIPPED_CATALOGUE


def test_pathways_validate_passes_on_the_shipped_catalogue() -> None:
    result = CliRunner().invoke(app, ["validate", str(SHIPPED_CATALOGUE)])
    assert result.exit_code == 0, result.output
    assert any(line.startswith("ok ") for line in result.stdout.splitlines())
