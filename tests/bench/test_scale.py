"""bench.scale end to end at a tiny size, so the benchmark keeps working between its big runs:
real dev server, worker and API processes, a burst of SLA rungs made to fall due together."""

from __future__ import annotations

from bench import scale


async def test_scale_bench_runs_and_reports_every_figure() -> None:
    figures = await scale.main([
        "--pathways", "20", "--burst", "2", "--burst-within", "6", "--burst-margin", "2",
        "--rounds", "2", "--sample", "2", "--no-write",
    ])

    assert figures["pathways"] == 20 and figures["http_statuses"] == {201: 20}
    assert figures["start_per_s"] > 0 and figures["rss_worker_started_mb"] > 0
    assert figures["history_per_completed_handover"] > 0
    assert figures["latency_ms"] and all(v["p95"] >= v["p50"] for v in figures["latency_ms"].values())
    burst = figures["burst_result"]
    assert (burst["alerts_recorded"], burst["reminders_accepted"]) == (2, 2)
    assert burst["all_recorded_s"] is not None and burst["all_notified_s"] is not None
    assert figures["open_escalations"] == 2  # the burst's alerts are coordinator work
    assert not figures.get("warnings")
