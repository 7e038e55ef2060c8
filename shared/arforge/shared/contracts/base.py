"""Core contract types: priorities, retry policies, job messages, artifacts, job specs."""

from __future__ import annotations

import builtins
import json
import random
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Priority(StrEnum):
    """Priority lanes, polled high -> default -> low (with anti-starvation)."""

    high = "high"
    default = "default"
    low = "low"


PRIORITIES: tuple[Priority, ...] = (Priority.high, Priority.default, Priority.low)


class RetryPolicy(BaseModel):
    """Retries with exponential backoff and a per-attempt timeout.

    ``delays_s[i]`` is the wait before attempt ``i + 2`` (seconds), so a job has
    ``len(delays_s) + 1`` attempts. ``jitter`` is a fraction added on top: the actual
    delay is uniform in ``[d, d * (1 + jitter)]``.
    """

    model_config = ConfigDict(frozen=True)

    delays_s: tuple[float, ...]
    timeout_s: float = Field(gt=0)
    jitter: float = Field(0.1, ge=0, le=1)

    @property
    def max_attempts(self) -> int:
        return len(self.delays_s) + 1

    def delay_for(self, attempt: int, rng: random.Random | None = None) -> float:
        """Delay in seconds before the attempt after ``attempt`` (1-based) failed."""
        if not self.delays_s:
            return 0.0
        base = self.delays_s[min(attempt, len(self.delays_s)) - 1]
        return base * (1 + (rng or random).uniform(0, self.jitter))


class InputRef(BaseModel):
    """A reference to uploaded content in the object store (never the bytes)."""

    upload_id: str
    key: str
    kind: str = Field(description="Sniffed content kind, e.g. video, image, images_zip, glb")
    content_type: str
    filename: str | None = None
    size: int | None = None


class Artifact(BaseModel):
    """A file a job produced, stored under ``jobs/<job_id>/<name>``."""

    name: str = Field(examples=["model.glb"])
    key: str = Field(examples=["jobs/0b7f.../model.glb"])
    content_type: str = Field(examples=["model/gltf-binary"])
    size: int = Field(ge=0, description="Bytes")
    sha256: str | None = None


class JobResult(BaseModel):
    """Base for every job type's result: the artifacts plus type-specific fields."""

    artifacts: list[Artifact] = []


class JobMessage(BaseModel):
    """The body of a message on ``jobs.<type>.<priority>``.

    ``run`` starts at 1 and grows on each manual retry or dead-letter replay; with the
    JetStream delivery count it fences stale events (see the tracker).
    """

    job_id: str
    type: str
    priority: Priority = Priority.default
    tenant_id: str
    run: int = 1
    params: dict = {}
    inputs: list[InputRef] = []
    submitted_at: datetime


@dataclass(frozen=True)
class JobSpec:
    """Everything the platform knows about one job type.

    ``params`` validates the submitted parameters (422 on error), ``result`` validates
    what the handler returns, ``input_kinds`` lists the accepted upload kinds and how
    many inputs a job takes (``sole_kinds``: kinds that must come alone; ``min_images``:
    the least number of photos when the inputs are single images), ``implemented`` is
    False for types whose worker does not exist yet.
    """

    def validate_params(self, params: dict[str, Any]) -> BaseModel:
        """``params`` (the JSON object of a submission) as this type's params model.

        Strict JSON-mode validation, as the API applies it to what it receives: ``true``
        is not an integer, ``"5"`` is not a number, ``1e3`` (a float) is not an integer,
        but an integer is still a valid float (JSON has one number type). Raises pydantic's
        ``ValidationError``.
        """
        return self.params.model_validate_json(json.dumps(params), strict=True)

    def input_problem(self, kinds: list[str]) -> str | None:
        """Why inputs of these upload kinds (in order) cannot make a job, or ``None``."""
        n = len(kinds)
        if not self.min_inputs <= n <= self.max_inputs:
            return f"{self.type} takes {self.min_inputs} to {self.max_inputs} inputs, got {n}"
        if self.input_kinds:
            bad = sorted({k for k in kinds if k not in self.input_kinds})
            if bad:
                accepted = ", ".join(sorted(self.input_kinds))
                return f"{self.type} does not take {', '.join(bad)} inputs; it accepts {accepted}"
        sole = sorted({k for k in kinds if k in self.sole_kinds})
        if sole and n > 1:
            return (
                f"a {sole[0]} must be the only input of a {self.type} job; "
                "give one video, or a set of photos, not both"
            )
        only_photos = bool(kinds) and all(k == "image" for k in kinds)
        if only_photos and n < self.min_images:
            return f"{self.type} needs at least {self.min_images} overlapping photos, got {n}"
        return None

    type: str
    description: str
    params: builtins.type[BaseModel]
    result: builtins.type[JobResult]
    policy: RetryPolicy
    input_kinds: frozenset[str] = field(default_factory=frozenset)
    min_inputs: int = 0
    max_inputs: int = 1
    # Kinds that must be the job's only input (one video, not a video plus photos).
    sole_kinds: frozenset[str] = field(default_factory=frozenset)
    # When every input is a single image: at least this many (0: no extra rule).
    min_images: int = 0
    # False while no worker for the type exists in this version: the API refuses such jobs
    # (422 job_type_unavailable) instead of queueing them forever.
    implemented: bool = True
