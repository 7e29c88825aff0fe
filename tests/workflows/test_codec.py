"""Key rotation on a real server: pathways sealed with key 1 keep running after key 2 is added,
and everything written from then on is sealed with key 2."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from pathways.demo import DEMO_PATIENTS
from pathways.settings import Settings
from pathways.state import PathwayStatus, TaskStatus
from tests.conftest import make_settings, run_worker
from tests.workflows.support import TWO_DAY, deliver_everything, provider, start, state_of
from workflows.codec import (
    KEY_ID,
    EncryptionCodec,
    Keyring,
    KeysUnavailable,
    encrypted_converter,
    load_keyring,
    new_key_line,
)
from workflows.pathway import PathwayWorkflow

pytestmark = pytest.mark.devserver


def _key_ids(history_payloads: list[Payload]) -> set[str]:
    return {p.metadata[KEY_ID].decode() for p in history_payloads if KEY_ID in p.metadata}


async def _input_key_ids(client: Client, workflow_id: str) -> set[str]:
    """Key ids of every payload in the workflow's history, as stored by the server."""
    raw = Client(client.service_client, namespace=client.namespace)  # no codec: what is stored
    history = await raw.get_workflow_handle(workflow_id).fetch_history()
    payloads = [
        payload
        for event in history.events
        for attributes in (
            event.workflow_execution_started_event_attributes.input,
            event.activity_task_scheduled_event_attributes.input,
            event.workflow_execution_update_accepted_event_attributes.accepted_request.input.args,
            event.workflow_execution_update_completed_event_attributes.outcome.success,
        )
        for payload in attributes.payloads
    ]
    assert payloads
    return _key_ids(payloads)


async def _connect(env: WorkflowEnvironment, settings: Settings) -> Client:
    return await Client.connect(
        env.client.service_client.config.target_host,
        data_converter=encrypted_converter(load_keyring(settings)),
    )


async def test_rotation_keeps_old_pathways_readable_and_seals_new_data_with_the_newest_key(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    target = dev_env.client.service_client.config.target_host
    settings = make_settings(tmp_path, target, task_queue="rotation")
    keys = settings.encryption_keys_path
    keys.write_text(new_key_line("k1") + "\n")
    before = await _connect(dev_env, settings)
    async for _ in run_worker(before, settings):
        old = await start(before, settings, TWO_DAY, DEMO_PATIENTS[0])
        await provider(old, (await state_of(old)).handovers["first-visit.1"], TaskStatus.ACCEPTED)
    assert await _input_key_ids(before, old.id) == {"k1"}

    keys.write_text(keys.read_text() + new_key_line("k2") + "\n")  # rotation: add a key
    after = await _connect(dev_env, settings)
    async for _ in run_worker(after, settings):
        old = after.get_workflow_handle_for(PathwayWorkflow.run, old.id)
        finished = await deliver_everything(old)  # k1 history replays, new work is sealed with k2
        new = await start(after, settings, TWO_DAY, DEMO_PATIENTS[1])
        await deliver_everything(new)
    assert finished.status is PathwayStatus.COMPLETED
    assert finished.patient == DEMO_PATIENTS[0]
    assert await _input_key_ids(after, old.id) == {"k1", "k2"}
    assert await _input_key_ids(after, new.id) == {"k2"}

    keys.write_text(new_key_line("k2") + "\n")  # key 1 dropped: its payloads can't be read
    with pytest.raises(ValueError, match="unknown encryption key id 'k1'"):
        await EncryptionCodec(load_keyring(settings)).decode(
            [(await _first_payload(after, old.id))]
        )


async def _first_payload(client: Client, workflow_id: str) -> Payload:
    raw = Client(client.service_client, namespace=client.namespace)
    history = await raw.get_workflow_handle(workflow_id).fetch_history()
    return history.events[0].workflow_execution_started_event_attributes.input.payloads[0]


async def test_payloads_are_sealed_and_tamper_evident() -> None:
    codec = EncryptionCodec(Keyring.parse(new_key_line("a"), "test"))
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'"9990047006"')
    [sealed] = await codec.encode([plain])
    assert sealed.metadata["encoding"] == b"binary/encrypted" and b"9990047006" not in sealed.data
    assert await codec.decode([sealed]) == [plain]
    assert await codec.decode([plain]) == [plain]  # unencrypted (older) payloads pass through
    flipped = bytes([sealed.data[-1] ^ 1])  # always a change (a fixed byte may be the same)
    tampered = Payload(metadata=dict(sealed.metadata), data=sealed.data[:-1] + flipped)
    with pytest.raises(ValueError, match="does not authenticate"):
        await codec.decode([tampered])


def test_malformed_keys_are_named_never_echoed() -> None:
    short = "k1:" + base64.b64encode(b"sixteen byte key").decode()
    with pytest.raises(KeysUnavailable) as refused:
        Keyring.parse(f"# comment, with a comma\n{short}\n", "keys.txt")
    assert str(refused.value) == "keys.txt, line 2: the key must be base64 of 32 random bytes"
    with pytest.raises(KeysUnavailable, match="unique"):
        Keyring.parse(f"{new_key_line('x')},{new_key_line('x')}", "inline")
