"""Pathway Orchestrator: patient care pathways run like a lean supply chain."""
