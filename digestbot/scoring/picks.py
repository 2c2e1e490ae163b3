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
    # (typed, used): a misspelt keyword word read as a word the papers use
    respelled: tuple[tuple[str, str], ...] = ()
    # scoring.semantic: picked for its meaning, no keyword of the reader being in it
    for_meaning: bool = False

    def why(self) -> dict[str, object]:
        out: dict[str, object] = {
            "matched": list(self.matched),
            "similar_to": self.similar_to,
            "similar_title": self.similar_title,
        }
        if self.respelled:
            out["respelled"] = [list(pair) for pair in self.respelled]
        if self.for_meaning:
            out["for_meaning"] = True
        return out


@dataclass(slots=True)
class SubscriberPicks:
    subscriber_id: int
    picks: list[Pick] = field(default_factory=list)
