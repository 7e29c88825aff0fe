"""The what-if page over real HTTP and in chromium: a scenario is validated at the door (problems
in the form, never a 500), runs in a background process with progress, can be cancelled, at
most two run at once, and finishes as baseline and changes side by side with intervals."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import httpx
import pytest

from tests.console.conftest import SCREENSHOTS, Console, axe_violations, screenshot
from tests.console.test_console_http import signed_in

pytestmark = pytest.mark.devserver

SMALL = """\
name: ucr-small
description: Two weeks of urgent community response
definition: urgent-community-response
start: 2026-01-05T00:00:00Z
horizon: P14D
warm_up: P2D
drain: P5D
arrivals: {per_day: 20, hours: [8, 20]}
providers:
  elmshire-ucr-central:
    capacity: 1
    accept: {kind: exponential, mean: PT8M}
    complete: {kind: lognormal, mean: PT65M, sd: PT25M}
standards:
  - {name: UCR 2-hour response, step: urgent-response, within: PT2H, target: 0.7}
changes:
  - name: add-central-team
    description: a second team at Central
    providers:
      elmshire-ucr-central: {capacity: 3}
"""


def _start_form(token: str, **values: str) -> dict[str, str]:
    return {"csrf": token, "example": "", "yaml": "", "replications": "2", "seed": "1"} | values


async def _job_id(response: httpx.Response) -> str:
    assert response.status_code == 303, response.text
    match = re.fullmatch(r"/whatif/jobs/([\w-]+)", response.headers["location"])
    assert match is not None
    return match.group(1)


async def _wait_finished(client: httpx.AsyncClient, job_id: str, seconds: float = 120) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        body = await client.get(f"/whatif/jobs/{job_id}/progress")
        assert body.status_code == 200
        if 'hx-trigger="every 1s"' not in body.text:
            return body.text
        await asyncio.sleep(0.5)
    raise AssertionError("simulation did not finish")


async def test_bad_scenarios_are_listed_in_the_form_never_a_server_error(
    console: Console,
) -> None:
    client, token = await signed_in(console)
    try:
        cases = {
            "not: [valid": "not valid YAML",
            "a: &x [1]\nb: *x\n": "aliases",
            "name: x\n": "definition",
            SMALL.replace("urgent-community-response", "no-such-pathway"): "no-such-pathway",
            SMALL.replace("elmshire-ucr-central:\n    capacity",
                          "nobody-here:\n    capacity"): "nobody-here",
            "x: " + "y" * (70 * 1024): "64 KiB",
            "a: " + "{b: " * 3000 + "1" + "}" * 3000: "nested too deeply",
        }
        for text, expected in cases.items():
            refused = await client.post("/whatif", data=_start_form(token, yaml=text))
            assert refused.status_code == 422, (expected, refused.status_code)
            assert 'role="alert"' in refused.text and expected in refused.text, expected
        bounds = await client.post("/whatif", data=_start_form(
            token, yaml=SMALL, replications="31", seed="-1"))
        assert bounds.status_code == 422
        assert "Replications: a whole number from 1 to 30" in bounds.text
        assert "Seed: a whole number from 0" in bounds.text
        too_big = await client.post("/whatif", data=_start_form(
            token, example="ucr-add-team.yaml", replications="30"))
        assert too_big.status_code == 422 and "simulated pathways" in too_big.text
        uploaded = await client.post(
            "/whatif", data=_start_form(token),
            files={"upload": ("big.yaml", b"x: " + b"y" * (70 * 1024), "text/yaml")})
        assert uploaded.status_code == 422 and "uploaded file is larger" in uploaded.text
        no_token = await client.post("/whatif", data={"yaml": SMALL, "replications": "2"})
        assert no_token.status_code == 403
    finally:
        await client.aclose()


async def test_an_uploaded_scenario_runs_in_the_background_and_is_reproducible(
    console: Console,
) -> None:
    client, token = await signed_in(console)
    try:
        answers = []
        for _ in range(2):
            started = await client.post(
                "/whatif", data=_start_form(token),
                files={"upload": ("small.yaml", SMALL.encode(), "text/yaml")})
            job_id = await _job_id(started)
            answers.append(await _wait_finished(client, job_id))
        first, second = answers
        assert "Finished: 4 replications" in first
        for text in ("baseline", "add-central-team", "UCR 2-hour response", "elmshire-ucr-central",
                     "Breaches per 100 handovers", "Utilisation (%)", "<svg"):
            assert text in first, text
        strip = re.compile(r"/whatif/jobs/[\w-]+")
        assert strip.sub("", first) == strip.sub("", second)  # same seed, same answer
        listed = await client.get("/whatif")
        assert "ucr-small" in listed.text and "finished" in listed.text
        example = await client.get("/whatif/examples/ucr-add-team.yaml")
        assert example.status_code == 200 and "remove_providers" in example.text
        outside = await client.get("/whatif/examples/..%2F..%2Fpyproject.toml")
        assert outside.status_code == 404
    finally:
        await client.aclose()


async def test_at_most_two_run_at_once_and_a_run_can_be_cancelled(console: Console) -> None:
    client, token = await signed_in(console)
    try:
        long = _start_form(token, example="ucr-add-team.yaml", replications="3")
        jobs = [await _job_id(await client.post("/whatif", data=long)) for _ in range(2)]
        try:
            third = await client.post("/whatif", data=long)
            assert third.status_code == 429 and "running already" in third.text
            running = await client.get(f"/whatif/jobs/{jobs[0]}")
            assert "Running:" in running.text and "<progress" in running.text
        finally:
            for job_id in jobs:
                cancelled = await client.post(f"/whatif/jobs/{job_id}/cancel",
                                              data={"csrf": token})
                assert cancelled.status_code == 303
        for job_id in jobs:
            page = await client.get(f"/whatif/jobs/{job_id}")
            assert "Cancelled after" in page.text
        started = await client.post("/whatif", data=_start_form(token, yaml=SMALL))
        await _wait_finished(client, await _job_id(started))  # slots free again
        missing = await client.get("/whatif/jobs/nope")
        assert missing.status_code == 404
    finally:
        await client.aclose()


async def test_a_coordinator_compares_scenarios_in_the_browser(
    console: Console, page: Any
) -> None:
    await page.goto(f"{console.base_url}/whatif")
    await page.get_by_role("link", name="What-if").wait_for()
    assert await page.get_by_role("link", name="What-if").get_attribute("aria-current") == "page"
    await page.get_by_label("Or paste a scenario").fill(SMALL)
    await page.get_by_label("Replications").fill("3")
    await page.get_by_role("button", name="Run simulation").click()
    await page.wait_for_url(re.compile(r".*/whatif/jobs/[\w-]+$"))
    await page.get_by_text("Finished: 6 replications").wait_for(timeout=120_000)
    standards = page.locator("#whatif-standards")
    assert "UCR 2-hour response" in await standards.inner_text()
    assert await page.locator("figure.ci-chart svg").count() >= 2
    assert await axe_violations(page) == []
    await page.locator(".whatif-charts").screenshot(path=str(SCREENSHOTS / "whatif-charts.png"))
    shot = await screenshot(page, "whatif-answer")
    assert shot.stat().st_size > 10_000
    await page.goto(f"{console.base_url}/whatif")
    await page.get_by_label("Or paste a scenario").fill("name: [broken")
    await page.get_by_role("button", name="Run simulation").click()
    await page.get_by_role("alert").wait_for()
    assert "not valid YAML" in await page.get_by_role("alert").inner_text()
    assert await axe_violations(page) == []
    await screenshot(page, "whatif-form")
