"""`pathways setup` and `pathways start` as ops run them: exit codes, output, no patient data."""

from __future__ import annotations

from temporalio.testing import WorkflowEnvironment

from pathways.settings import Settings
from pathways.state import PathwayState
from tests.ops.processes import env_for, free_port, run
from workflows.pathway import PathwayWorkflow


def test_setup_is_idempotent(settings: Settings, dev_env: WorkflowEnvironment) -> None:
    env = env_for(settings)
    first = run("setup", env=env)
    second = run("setup", env=env)
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert "already registered" in second.stdout
    assert "database: up to date" in second.stdout


async def test_start_prints_the_pathway_id_of_a_running_pathway(
    settings: Settings, dev_env: WorkflowEnvironment, worker: object
) -> None:
    done = run("start", "urgent-community-response", "--nhs-number", "943 476 5919",
               env=env_for(settings))
    assert done.returncode == 0, done.stderr
    pathway_id = done.stdout.strip().splitlines()[-1]
    assert pathway_id.startswith("pw-")
    state: PathwayState = await dev_env.client.get_workflow_handle(pathway_id).query(
        PathwayWorkflow.state
    )
    assert state.definition.id == "urgent-community-response"
    assert state.patient.nhs_number == "9434765919"


def test_start_refuses_an_nhs_number_with_a_bad_check_digit_without_echoing_it(
    settings: Settings,
) -> None:
    done = run("start", "urgent-community-response", "--nhs-number", "9434765918",
               env=env_for(settings))
    assert done.returncode == 2
    assert "nhs_number" in done.stderr
    assert "9434765918" not in done.stderr + done.stdout


def test_start_refuses_an_unknown_definition(settings: Settings) -> None:
    done = run("start", "no-such-pathway", "--nhs-number", "9434765919", env=env_for(settings))
    assert done.returncode == 2
    assert "no-such-pathway" in done.stderr


def test_global_options_override_the_environment(settings: Settings) -> None:
    dead = f"127.0.0.1:{free_port()}"
    done = run("--temporal-address", dead, "start", "urgent-community-response",
               "--nhs-number", "9434765919", env=env_for(settings))
    assert done.returncode == 1
    assert "9434765919" not in done.stdout + done.stderr
