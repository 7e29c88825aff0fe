"""Service-time distributions a scenario gives in YAML, sampled in seconds.

Parameters are durations (ISO 8601, as in the catalogue) so a scenario reads like a contract:
`{kind: lognormal, mean: PT40M, sd: PT20M}`. Lognormal and gamma are given by mean and standard
deviation (what a provider can tell you), converted here to their natural parameters.
"""

from __future__ import annotations

import math
import random  # noqa: TID251  (seeded streams given by the caller: same seed, same result)
from datetime import timedelta
from typing import Annotated, Literal

from pydantic import Field, model_validator

from pathways.model import Duration, SignedDuration, Strict, format_duration


class Fixed(Strict):
    """Always the same time: for worked-by-hand scenarios and tests."""

    kind: Literal["fixed"]
    value: SignedDuration

    def sample(self, rng: random.Random) -> float:
        return max(0.0, self.value.total_seconds())

    @property
    def mean_seconds(self) -> float:
        return max(0.0, self.value.total_seconds())


class Exponential(Strict):
    """Memoryless: e.g. time until a busy team looks at its inbox."""

    kind: Literal["exponential"]
    mean: Duration

    def sample(self, rng: random.Random) -> float:
        return rng.expovariate(1.0 / self.mean.total_seconds())

    @property
    def mean_seconds(self) -> float:
        return self.mean.total_seconds()


class _MeanSd(Strict):
    mean: Duration
    sd: Duration

    @property
    def mean_seconds(self) -> float:
        return self.mean.total_seconds()


class Lognormal(_MeanSd):
    """Right-skewed service times (most quick, a long tail), by mean and standard deviation."""

    kind: Literal["lognormal"]

    def sample(self, rng: random.Random) -> float:
        m, s = self.mean.total_seconds(), self.sd.total_seconds()
        sigma2 = math.log(1.0 + (s / m) ** 2)
        return rng.lognormvariate(math.log(m) - sigma2 / 2.0, math.sqrt(sigma2))


class Gamma(_MeanSd):
    """Sum-of-stages service times, by mean and standard deviation."""

    kind: Literal["gamma"]

    def sample(self, rng: random.Random) -> float:
        m, s = self.mean.total_seconds(), self.sd.total_seconds()
        shape = (m / s) ** 2
        return rng.gammavariate(shape, m / shape)


class Empirical(Strict):
    """Observed times, resampled uniformly (what `--fit` writes)."""

    kind: Literal["empirical"]
    values: tuple[SignedDuration, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _not_negative(self) -> Empirical:
        if any(v < timedelta(0) for v in self.values):
            raise ValueError("empirical times must not be negative")
        return self

    def sample(self, rng: random.Random) -> float:
        return self.values[int(rng.random() * len(self.values))].total_seconds()

    @property
    def mean_seconds(self) -> float:
        return sum(v.total_seconds() for v in self.values) / len(self.values)


Distribution = Annotated[
    Fixed | Exponential | Lognormal | Gamma | Empirical, Field(discriminator="kind")
]


def fixed(value: timedelta) -> Fixed:
    return Fixed(kind="fixed", value=value)


def empirical(seconds: list[float]) -> Empirical:
    """An empirical distribution from observed times in seconds (rounded to the second)."""
    return Empirical(
        kind="empirical", values=tuple(timedelta(seconds=round(s)) for s in seconds)
    )


def describe(distribution: Fixed | Exponential | Lognormal | Gamma | Empirical) -> str:
    mean = format_duration(timedelta(seconds=round(distribution.mean_seconds)))
    return f"{distribution.kind} (mean {mean})"
