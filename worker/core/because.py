"""Why something ended: an enum member for decisions, and the text people read."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Generic, TypeVar

C = TypeVar("C", bound=enum.Enum)


@dataclass(frozen=True)
class Because(Generic[C]):
    cause: C
    text: str = ""  # a more precise text than the cause's own, when there is one

    @property
    def reason(self) -> str:
        return self.text or str(self.cause.value)
