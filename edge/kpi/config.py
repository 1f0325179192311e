"""`KpiConfig`: the optional top-level `kpi:` section of the site file (targets, keep, timing).

kpi:
  availability: 99%
  completeness: 98%
  ack_within: {critical: 15m, warning: 4h}
  devices:
    meter-1: {availability: 95%}
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from edge.units import Duration

SEVERITIES = frozenset({"debug", "info", "warning", "critical"})


def parse_share(value: object) -> float:
    """A share from `99%`, `99.5 %` or a fraction 0..1 (`0.99`)."""
    if isinstance(value, bool):
        raise ValueError(
            f"invalid share {value!r}; expected a percentage such as 99% or a fraction such as 0.99"
        )
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(text[:-1]) / 100 if text.endswith("%") else float(text)
        except ValueError:
            raise ValueError(
                f"invalid share {value!r}; expected a percentage such as 99% or a fraction such as 0.99"
            ) from None
    elif isinstance(value, int | float):
        number = float(value)
    else:
        raise ValueError(
            f"invalid share {value!r}; expected a percentage such as 99% or a fraction such as 0.99"
        )
    if not 0.0 <= number <= 1.0:
        raise ValueError(
            f"share {value!r} is outside 0%..100% (a plain number is a fraction: 0.99 means 99%)"
        )
    return number


Share = Annotated[float, BeforeValidator(parse_share)]


class DeviceTargets(BaseModel):
    """Targets of one device that differ from the site's."""

    model_config = ConfigDict(extra="forbid")

    availability: Share | None = None
    completeness: Share | None = None


class KpiConfig(BaseModel):
    """Targets and bookkeeping of the operator KPIs (docs/kpi.md)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    #: a finished day below it raises an alert (per device)
    availability: Share = 0.99
    completeness: Share = 0.98
    #: severity -> time within which an alert of that severity should be acknowledged
    ack_within: dict[str, Duration] = Field(default_factory=lambda: {"critical": 900.0, "warning": 14400.0})
    #: device id -> its own targets
    devices: dict[str, DeviceTargets] = Field(default_factory=dict)
    #: days of figures kept in the state database
    keep: int = Field(400, ge=1, le=5000)
    #: a day is closed (its kpi_daily event journaled) this long after its local midnight
    close_after: Duration = 300.0
    #: how often the journal is folded and the delivery cursors are sampled
    interval: Duration = 5.0

    @field_validator("ack_within")
    @classmethod
    def _severities(cls, v: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(v) - SEVERITIES)
        if unknown:
            raise ValueError(
                f"unknown severity {', '.join(map(repr, unknown))}; expected some of {', '.join(sorted(SEVERITIES))}"
            )
        return v

    def targets_for(self, device: str) -> tuple[float, float]:
        """(availability, completeness) targets of `device`."""
        own = self.devices.get(device)
        avail = own.availability if own is not None and own.availability is not None else self.availability
        compl = own.completeness if own is not None and own.completeness is not None else self.completeness
        return avail, compl
