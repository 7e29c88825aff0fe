"""The pathway workflow as a next release might ship it: a behaviour change guarded by
`workflow.patched`, registered under the same workflow name, for the upgrade test.

The change: once per run, the pathway marks itself in its memo (a new history command). Without
the patch guard, a pathway started on the old code would fail to replay on this one
(non-determinism) and stop answering; with it, the old part of its history replays unchanged
and the new behaviour starts at its next step.
"""

from __future__ import annotations

from temporalio import workflow

from workflows.pathway import PathwayInput, PathwayResult, PathwayWorkflow

PATCH = "upgrade-memo-v2"
MEMO = {"code": "upgraded"}


@workflow.defn(name="PathwayWorkflow")
class UpgradedPathwayWorkflow(PathwayWorkflow):
    @workflow.init
    def __init__(self, input: PathwayInput) -> None:
        super().__init__(input)
        self._upgrade_marked = False

    @workflow.run
    async def run(self, input: PathwayInput) -> PathwayResult:
        return await super().run(input)

    def _refresh(self) -> None:
        super()._refresh()
        if not self._upgrade_marked and workflow.patched(PATCH):
            workflow.upsert_memo(MEMO)
            self._upgrade_marked = True
