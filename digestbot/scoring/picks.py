"""What scoring hands to rendering: a subscriber's chosen papers, each with why."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Pick:
    paper_id: str
    score: float
    # the subscriber's keywords/phrases found in the paper, for highlighting
    matched: tuple[str, ...] = ()
    # the liked paper this one most resembles, if any
    similar_to: str | None = None
    similar_title: str | None = None

    def why(self) -> dict[str, object]:
        return {
            "matched": list(self.matched),
            "similar_to": self.similar_to,
            "similar_title": self.similar_title,
        }


@dataclass(slots=True)
class SubscriberPicks:
    subscriber_id: int
    picks: list[Pick] = field(default_factory=list)
