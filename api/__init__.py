"""HTTP API: FHIR R4 Tasks for provider systems at /fhir, JSON for coordinators at /api."""
