"""The workflow sandbox, with the pure domain passed through.

`pathways` is deterministic, side-effect-free domain code (and networkx, which its definition
validation uses, reads os.environ at import): importing them once, outside the sandbox, is both
safe and much faster than re-importing them for every workflow run.

The logging renderers (structlog, and rich, which structlog can use to format tracebacks) run
inside the sandbox whenever the SDK logs a workflow task failure from there: they are passed
through, or a first import there (rich reads os.getcwd()) raises RestrictedWorkflowAccessError
and hides the failure being logged.
"""

from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

PASSED_THROUGH = ("pathways", "networkx", "yaml", "structlog", "rich")

RUNNER = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSED_THROUGH)
)
