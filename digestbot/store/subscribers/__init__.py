"""Subscribers and their feedback: adding, changing, finding, removing, CSV in and out."""

from .core import (
    add_subscriber,
    as_dict,
    disliked_ids,
    find_subscriber,
    get_subscriber,
    liked_ids,
    new_token,
    remove_subscriber,
    rotate_tokens,
    set_feedback,
    update_subscriber,
)
from .csvio import export_csv, import_csv
from .validate import STATUSES, email_key, parse_ids, parse_keywords, validate_email

__all__ = [
    "STATUSES",
    "add_subscriber",
    "as_dict",
    "disliked_ids",
    "email_key",
    "export_csv",
    "find_subscriber",
    "get_subscriber",
    "import_csv",
    "liked_ids",
    "new_token",
    "parse_ids",
    "parse_keywords",
    "remove_subscriber",
    "rotate_tokens",
    "set_feedback",
    "update_subscriber",
    "validate_email",
]
