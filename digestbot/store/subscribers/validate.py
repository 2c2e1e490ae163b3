"""Checks on what a subscriber (or an operator) typed: each failure names its field and
says how to fix it."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import email_validator

from ...config import validate_timezone
from ...errors import ConfigError, ValidationError
from ...periods import FREQUENCIES, WEEKDAYS
from ...states import FORMATS, STATUSES

MAX_NAME = 200
MAX_KEYWORD = 100
MAX_KEYWORDS = 50
MAX_ITEMS = 100

_SPLIT = re.compile(r"[,;\n]")
_SPACE = re.compile(r"\s+")


def _has_control(text: str) -> bool:
    # Cc covers \r \n \t \0 and friends; Cf covers invisible format characters (RLO...)
    return any(unicodedata.category(ch) in ("Cc", "Cf") for ch in text)


def validate_email(address: str) -> str:
    """The normalised address (domain lower-cased, unicode NFC); no DNS look-ups."""
    if not isinstance(address, str) or not address.strip():
        raise ValidationError(
            "an email address is required",
            field="email",
            hint="Give an address like ada@example.org.",
        )
    if _has_control(address):
        raise ValidationError(
            "the address contains control characters",
            field="email",
            hint="Remove line breaks and other invisible characters from the address.",
        )
    try:
        info = email_validator.validate_email(address.strip(), check_deliverability=False)
    except email_validator.EmailNotValidError as exc:
        raise ValidationError(
            f"invalid address {address.strip()!r}: {exc}",
            field="email",
            hint="Give an address like ada@example.org.",
        ) from None
    return info.normalized


def email_key(address: str) -> str:
    """What duplicates are compared on: the whole address, case-insensitively.

    ``lower()``, not ``casefold()``: casefolding maps ``straße@`` onto ``strasse@``, two
    different mailboxes."""
    return address.lower()


def validate_name(name: str | None) -> str:
    name = "" if name is None else str(name)
    if _has_control(name):
        raise ValidationError(
            "the name contains line breaks or control characters",
            field="name",
            hint="Use a plain one-line name; line breaks could inject mail headers.",
        )
    name = _SPACE.sub(" ", name).strip()
    if len(name) > MAX_NAME:
        raise ValidationError(
            f"the name is {len(name)} characters long (at most {MAX_NAME})",
            field="name",
            hint="Shorten the name.",
        )
    return name


def parse_keywords(text: str | Sequence[str] | None) -> list[str]:
    """Comma-separated phrases (or a list of them), trimmed, de-duplicated ignoring case.

    ``"sparse autoencoders, Mechanistic  interpretability"`` gives
    ``["sparse autoencoders", "Mechanistic interpretability"]``.
    """
    if text is None:
        return []
    parts: list[str] = []
    for item in [text] if isinstance(text, str) else list(text):
        if not isinstance(item, str):
            raise ValidationError(
                f"a keyword must be text, got {item!r}", field="keywords", hint=_KEYWORD_HINT
            )
        parts.extend(_SPLIT.split(item))
    out: list[str] = []
    seen: set[str] = set()
    for raw in parts:
        if _has_control(raw.replace("\n", "")):
            raise ValidationError(
                "a keyword contains control characters", field="keywords", hint=_KEYWORD_HINT
            )
        phrase = _SPACE.sub(" ", raw).strip()
        if not phrase:
            continue
        if len(phrase) > MAX_KEYWORD:
            raise ValidationError(
                f"the keyword {phrase[:40]!r}... is {len(phrase)} characters long "
                f"(at most {MAX_KEYWORD})",
                field="keywords",
                hint="Keywords are short phrases separated by commas, e.g. "
                "'sparse autoencoders, mechanistic interpretability'.",
            )
        if phrase.casefold() not in seen:
            seen.add(phrase.casefold())
            out.append(phrase)
    if len(out) > MAX_KEYWORDS:
        raise ValidationError(
            f"{len(out)} keywords given (at most {MAX_KEYWORDS})",
            field="keywords",
            hint="Keep the phrases that matter most; like papers to refine the rest.",
        )
    return out


_KEYWORD_HINT = (
    "Separate phrases with commas, e.g. 'sparse autoencoders, mechanistic interpretability'."
)


def _choice(value: Any, field: str, choices: Sequence[str]) -> str:
    text = str(value).strip().lower() if value is not None else ""
    if text not in choices:
        raise ValidationError(
            f"{value!r} is not one of {', '.join(choices)}",
            field=field,
            hint=f"Use one of: {', '.join(choices)}.",
        )
    return text


def _int(value: Any, field: str, low: int, high: int, hint: str) -> int:
    try:
        if isinstance(value, bool) or isinstance(value, float) and not value.is_integer():
            raise ValueError
        number = int(str(value).strip()) if not isinstance(value, int | float) else int(value)
    except (TypeError, ValueError):
        raise ValidationError(f"{value!r} is not a whole number", field=field, hint=hint) from None
    if not low <= number <= high:
        raise ValidationError(f"{number} is not between {low} and {high}", field=field, hint=hint)
    return number


def validate_weekday(value: Any) -> int:
    if isinstance(value, str) and value.strip() and not value.strip().isdigit():
        low = value.strip().lower()
        for number, name in enumerate(WEEKDAYS):
            if len(low) >= 3 and name.lower().startswith(low):
                return number
        raise ValidationError(
            f"{value!r} is not a weekday",
            field="weekday",
            hint="Use 0-6 (0 is Monday) or a name such as 'monday' or 'mon'.",
        )
    return _int(value, "weekday", 0, 6, "Use 0-6 (0 is Monday) or a name such as 'mon'.")


def validate_send_hour(value: Any) -> int:
    return _int(value, "send_hour", 0, 23, "Use an hour of the day, 0-23, in the reader's zone.")


def validate_max_items(value: Any) -> int:
    return _int(value, "max_items", 1, MAX_ITEMS, f"Use a number of papers from 1 to {MAX_ITEMS}.")


def validate_min_score(value: Any) -> float:
    try:
        if isinstance(value, bool):
            raise ValueError
        number = float(str(value).strip()) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        raise ValidationError(
            f"{value!r} is not a number", field="min_score", hint="Use a number such as 0 or 0.1."
        ) from None
    if not 0.0 <= number <= 10.0 or number != number:
        raise ValidationError(
            f"{number} is not between 0 and 10",
            field="min_score",
            hint="Scores are similarities, mostly between 0 and 1; 0 keeps every match.",
        )
    return number


def validate_tz(value: Any) -> str:
    try:
        return validate_timezone(str(value).strip() if value is not None else "", field="timezone")
    except ConfigError as exc:
        raise ValidationError(exc.message, field="timezone", hint=exc.hint) from None


def parse_ids(value: str | Sequence[str] | None) -> list[str]:
    """Paper ids separated by spaces, commas or semicolons (or a list of them)."""
    if value is None:
        return []
    items = [value] if isinstance(value, str) else list(value)
    parts = (part for item in items for part in re.split(r"[\s,;]+", str(item)))
    return list(dict.fromkeys(part for part in parts if part))


# each field's check, for adding and changing subscribers: the raw value in, the value to
# store out
CHECKS: dict[str, Callable[[Any], Any]] = {
    "email": validate_email,
    "name": validate_name,
    "keywords": parse_keywords,
    "frequency": partial(_choice, field="frequency", choices=FREQUENCIES),
    "weekday": validate_weekday,
    "send_hour": validate_send_hour,
    "timezone": validate_tz,
    "max_items": validate_max_items,
    "min_score": validate_min_score,
    "formats": partial(_choice, field="formats", choices=FORMATS),
    "status": partial(_choice, field="status", choices=STATUSES),
}
