"""The workflow sandbox, with the pure domain passed through.

`pathways` is deterministic, side-effect-free domain code (and networkx, which its definition
validation uses, reads os.environ at import): importing them once, outside the sandbox, is both
safe and much faster than re-importing them for every workflow run.
"""

from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

PASSED_THROUGH = ("pathways", "networkx", "yaml")

RUNNER = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSED_THROUGH)
)
