"""The subscribe and preferences forms: length limits first, then the store's own checks.

Every field gets a hard length cap before anything parses it, so a hostile form costs
nothing; then each field is checked by the same validators the CLI uses, and all errors are
collected so the reader sees every problem at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request

from ..errors import ValidationError
from ..store.subscribers.validate import CHECKS

# Characters per field, checked before parsing. An address is at most 254 (RFC 5321).
LIMITS = {
    "email": 254,
    "keywords": 2000,
    "frequency": 10,
    "weekday": 10,
    "send_hour": 4,
    "timezone": 64,
    "formats": 10,
    "max_items": 4,
}
SUBSCRIBE_FIELDS = ("email", "keywords", "frequency", "weekday", "send_hour", "timezone")
PREFERENCE_FIELDS = (
    "keywords",
    "frequency",
    "weekday",
    "send_hour",
    "timezone",
    "formats",
    "max_items",
)
# Starlette's form parser: no uploads, few fields. Parts may be as large as the whole body
# limit, so an oversized form always meets BodyLimit's 413 rather than the parser's 400.
MAX_FIELDS = 20

LABELS = {
    "email": "Email address",
    "keywords": "Interests",
    "frequency": "How often",
    "weekday": "Day of the week",
    "send_hour": "Hour",
    "timezone": "Time zone",
    "formats": "Delivery",
    "max_items": "Papers per digest",
}


@dataclass
class FormResult:
    raw: dict[str, str]
    values: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors


async def read_form(request: Request) -> FormData:
    limit = request.app.state.site.config["web.max_body_kb"] * 1024
    return await request.form(max_files=0, max_fields=MAX_FIELDS, max_part_size=limit + 1)


def check_form(form: Mapping[str, Any], fields: tuple[str, ...]) -> FormResult:
    """Validate the named fields of a submitted form."""
    raw: dict[str, str] = {}
    result = FormResult(raw)
    for name in fields:
        value = form.get(name, "")
        if not isinstance(value, str):
            result.errors[name] = "This field must be text."
            continue
        raw[name] = value
        if len(value) > LIMITS[name]:
            # the raw value is not echoed back into the page: it may be huge
            raw[name] = ""
            result.errors[name] = (
                f"This is {len(value)} characters long; at most {LIMITS[name]} are accepted."
            )
            continue
        if name == "weekday" and form.get("frequency", "daily") != "weekly" and not value:
            result.values[name] = 0
            continue
        try:
            result.values[name] = CHECKS[name](value)
        except ValidationError as error:
            where = error.field if error.field in LABELS else "form"
            hint = f". {error.hint}" if error.hint else ""
            result.errors.setdefault(where, error.message + hint)
    if "keywords" in result.values and not result.values["keywords"]:
        result.errors.setdefault(
            "keywords",
            "Give at least one interest, e.g. 'diffusion models, reinforcement learning'.",
        )
    return result
