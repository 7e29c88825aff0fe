"""OpenAPI shapes of the FHIR resources we serve and accept.

Deliberately loose (extra members allowed): the resources themselves follow FHIR R4 and are checked
against fhir.resources in the tests; these models only tell generic clients and schemathesis what
to expect.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Resource(BaseModel):
    model_config = ConfigDict(extra="allow")


class TaskModel(Resource):
    """A FHIR R4 Task: one handover."""

    resourceType: Literal["Task"]
    id: str | None = None
    status: str
    intent: str = "order"


class CarePlanModel(Resource):
    """A FHIR R4 CarePlan: the pathway a Task is basedOn."""

    resourceType: Literal["CarePlan"]
    id: str
    status: str
    intent: str = "order"


class TaskUpdate(Resource):
    """The body of PUT /fhir/Task/{id}: the Task as the provider wants it, status first."""

    resourceType: Literal["Task"]
    id: str
    status: str
    intent: str = "order"
    output: list[dict[str, Any]] = Field(default_factory=list)
    statusReason: dict[str, Any] | None = None


class BundleEntry(Resource):
    fullUrl: str
    resource: TaskModel


class BundleModel(Resource):
    """A searchset Bundle of Tasks."""

    resourceType: Literal["Bundle"]
    type: Literal["searchset"]
    total: int
    link: list[dict[str, str]]
    entry: list[BundleEntry] = Field(default_factory=list)


class HistoryEntry(Resource):
    fullUrl: str
    resource: TaskModel
    request: dict[str, str]
    response: dict[str, str]


class HistoryBundleModel(Resource):
    """A history Bundle of one Task's versions, newest first."""

    resourceType: Literal["Bundle"]
    type: Literal["history"]
    total: int
    link: list[dict[str, str]]
    entry: list[HistoryEntry] = Field(default_factory=list)


class QuestionnaireModel(Resource):
    resourceType: Literal["Questionnaire"]
    id: str
    url: str
    status: str


class CapabilityStatementModel(Resource):
    resourceType: Literal["CapabilityStatement"]
    fhirVersion: str
    kind: str
