"""The `pathways` command: one Typer app; each module of this package adds its subcommands."""

import typer

app = typer.Typer(
    name="pathways",
    help="Pathway Orchestrator: run patient care pathways like a lean supply chain.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
