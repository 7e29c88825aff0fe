"""Temporal activities: the pathway workflow's side effects (event store, provider webhooks)."""
