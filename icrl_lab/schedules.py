"""Noise schedules: epsilon as a function of progress through a learning history.

Each schedule is a small frozen dataclass: call it on progress in [0, 1] (the fraction of the history
done) to get epsilon, or ask `values(num_steps)` for one epsilon per step. All three fall from `start`
to `floor` and reach the floor at progress `floor_at` (0.9 in AD^eps), then stay there.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

import numpy as np


@dataclass(frozen=True)
class _Schedule:
    start: float = 1.0
    floor: float = 0.0
    floor_at: float = 0.9

    def __post_init__(self):
        if not 0.0 <= self.start <= 1.0:
            raise ValueError(f"start={self.start} is not allowed: epsilon must lie in [0, 1]")
        if not 0.0 <= self.floor <= self.start:
            raise ValueError(f"floor={self.floor} is not allowed: it must lie in [0, start={self.start}]")
        if not 0.0 < self.floor_at <= 1.0:
            raise ValueError(f"floor_at={self.floor_at} is not allowed: it must lie in (0, 1]")

    def __call__(self, progress):
        progress = np.clip(np.asarray(progress, dtype=np.float64) / self.floor_at, 0.0, 1.0)
        return self.floor + (self.start - self.floor) * self._shape(progress)

    def _shape(self, x):
        """How much of the way from start to floor remains at x in [0, 1]: 1 at x = 0, 0 at x = 1."""
        raise NotImplementedError

    def values(self, num_steps: int) -> np.ndarray:
        """Epsilon at each of `num_steps` steps (step t is at progress t / num_steps)."""
        return self(np.arange(num_steps) / num_steps)

    def with_floor(self, floor: float):
        return replace(self, floor=float(floor))

    def describe(self) -> dict:
        return {"schedule": type(self).__name__, **asdict(self)}


@dataclass(frozen=True)
class LinearSchedule(_Schedule):
    """Epsilon falls in a straight line (the AD^eps paper's schedule)."""

    def _shape(self, x):
        return 1.0 - x


@dataclass(frozen=True)
class ExponentialSchedule(_Schedule):
    """Epsilon falls fast at first, then slowly: a geometric decay rescaled to reach the floor exactly."""

    decay: float = 0.01  # how far the geometric curve falls over the decay, before rescaling

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 < self.decay < 1.0:
            raise ValueError(f"decay={self.decay} is not allowed: it must lie in (0, 1)")

    def _shape(self, x):
        return (self.decay ** x - self.decay) / (1.0 - self.decay)


@dataclass(frozen=True)
class StepSchedule(_Schedule):
    """Epsilon falls in `levels` equal stairs: constant noise within each stretch of the history."""

    levels: int = 5

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.levels, int) or self.levels < 2:
            raise ValueError(f"levels={self.levels!r} is not allowed: a staircase needs an integer >= 2")

    def _shape(self, x):
        return 1.0 - np.minimum(np.floor(x * self.levels), self.levels - 1) / (self.levels - 1)


SCHEDULES = {"linear": LinearSchedule, "exponential": ExponentialSchedule, "step": StepSchedule}


def make_schedule(schedule: str, **kwargs):
    """A schedule by name ('linear', 'exponential', 'step') and its fields."""
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule={schedule!r} is not one of {sorted(SCHEDULES)}")
    return SCHEDULES[schedule](**kwargs)


def schedule_of(description: dict):
    """The schedule a `describe()` dict names, as a noise-distillation data source records it (keys other
    than the schedule's name and fields are ignored)."""
    by_name = {cls.__name__: cls for cls in SCHEDULES.values()}
    if description.get("schedule") not in by_name:
        raise ValueError(f"schedule={description.get('schedule')!r} is not one of {sorted(by_name)}: this record "
                         f"describes no noise schedule")
    cls = by_name[description["schedule"]]
    return cls(**{field_.name: description[field_.name] for field_ in fields(cls) if field_.name in description})
