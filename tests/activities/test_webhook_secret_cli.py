"""`pathways webhook secret --provider ID` as a provider's administrator runs it: the printed
secret verifies a real delivery made with the same settings (given as global options)."""

from __future__ import annotations

import copy
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import httpx
import yaml
from temporalio.testing import ActivityEnvironment

from activities.pathway_activities import PathwayActivities
from activities.store import EventStore
from pathways.events import Notification, NotificationKind
from pathways.settings import Settings
from tests.catalogue.conftest import DISCHARGE
from tests.fixtures.provider_system import ProviderSystem
from tests.ops.processes import PATHWAYS

README = Path(__file__).parents[2] / "README.md"


def readme_receiver(whsec: str) -> dict[str, Any]:
    """The README's "Verifying webhooks" example, run as written with this secret."""
    section = README.read_text().split("## Verifying webhooks", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert code is not None
    namespace: dict[str, Any] = {}
    exec(code.group(1).replace("whsec_...", whsec), namespace)
    return namespace


def pathways(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PATHWAYS_")}
    return subprocess.run([PATHWAYS, *args], env=clean | env, capture_output=True, text=True,
                          timeout=60, check=False)


def catalogue_with_webhook(folder: Path, url: str) -> Path:
    definition = copy.deepcopy(DISCHARGE)
    for role in definition["roles"]:
        for entry in role["providers"]:
            if entry["id"] == "ncs":
                entry["webhook"] = url
    folder.mkdir()
    (folder / "hip.yaml").write_text(yaml.safe_dump(definition))
    return folder


async def test_the_printed_secret_verifies_a_real_delivery(tmp_path: Path) -> None:
    system = ProviderSystem()
    data_dir, url = tmp_path / "data", f"{system.url}/ncs"
    catalogue = catalogue_with_webhook(tmp_path / "catalogue", url)
    try:
        shown = pathways("--data-dir", str(data_dir), "--catalogue-dir", str(catalogue),
                         "webhook", "secret", "--provider", "ncs")
        assert shown.returncode == 0, shown.stderr
        [line] = shown.stdout.splitlines()
        key_id, whsec = line.split("\t")
        assert key_id == "v1" and whsec.startswith("whsec_")
        assert whsec not in shown.stderr and str(data_dir / "secret.key") in shown.stderr
        system.secrets.append(whsec)  # the provider configures what it was given

        settings = Settings(data_dir=data_dir, metrics_port=0)  # the worker's settings
        store = EventStore(settings.event_store)
        store.migrate()
        note = Notification(pathway_id="pw-cli", handover_id="rehab.1", provider_id="ncs",
                            webhook=url, kind=NotificationKind.DISPATCHED, version=1,
                            task={"resourceType": "Task", "id": "pw-cli.rehab.1",
                                  "meta": {"versionId": "1"}})
        async with httpx.AsyncClient() as http:
            acts = PathwayActivities(settings, store, http)
            assert await ActivityEnvironment().run(acts.notify_provider, note) == 202
    finally:
        system.close()
    delivered = system.received[-1]
    assert delivered.verified is True

    readme = readme_receiver(whsec)
    assert readme["receive"](delivered.body, delivered.headers) == 204
    assert readme["applied"] == {"pw-cli.rehab.1": 1}
    tampered = delivered.body.replace(b'"1"', b'"9"')
    assert readme["receive"](tampered, delivered.headers) == 401
    assert readme["applied"] == {"pw-cli.rehab.1": 1}


def test_during_rotation_every_active_secret_is_printed_current_first(tmp_path: Path) -> None:
    catalogue = catalogue_with_webhook(tmp_path / "catalogue", "https://ncs.example/hook")
    args = ("--data-dir", str(tmp_path / "data"), "--catalogue-dir", str(catalogue),
            "webhook", "secret", "--provider", "ncs")
    before = pathways(*args)
    during = pathways(*args, PATHWAYS_WEBHOOK_SECRET_VERSIONS='{"ncs": [2, 1]}')
    assert before.returncode == during.returncode == 0, during.stderr
    [(old_id, old)] = [line.split("\t") for line in before.stdout.splitlines()]
    [(new_id, new), current_old] = [line.split("\t") for line in during.stdout.splitlines()]
    assert (new_id, current_old) == ("v2", [old_id, old]) and new != old


def test_an_unknown_provider_is_refused(tmp_path: Path) -> None:
    catalogue = catalogue_with_webhook(tmp_path / "catalogue", "https://ncs.example/hook")
    result = pathways("--data-dir", str(tmp_path / "data"), "--catalogue-dir", str(catalogue),
                      "webhook", "secret", "--provider", "ncs-typo")
    assert result.returncode == 1
    assert "no provider 'ncs-typo'" in result.stderr and result.stdout == ""


def test_validate_names_an_insecure_webhook(tmp_path: Path) -> None:
    catalogue = catalogue_with_webhook(tmp_path / "catalogue", "http://ncs.example/hook")
    result = pathways("validate", str(catalogue))
    assert result.returncode == 1
    assert "providers[ncs].webhook: a webhook must use https" in result.stderr
