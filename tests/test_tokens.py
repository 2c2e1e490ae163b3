from __future__ import annotations

import pytest

from digestbot.errors import ConfigError
from digestbot.tokens import TokenError, Tokens


def test_round_trip_and_purpose_separation() -> None:
    tokens = Tokens("s" * 32)
    token = tokens.dumps("unsubscribe", "abc")
    assert tokens.loads("unsubscribe", token) == "abc"
    with pytest.raises(TokenError):
        tokens.loads("confirm", token)


def test_forged_and_foreign_tokens_fail() -> None:
    token = Tokens("s" * 32).dumps("confirm", "abc")
    with pytest.raises(TokenError, match="not valid"):
        Tokens("t" * 32).loads("confirm", token)
    with pytest.raises(TokenError):
        Tokens("s" * 32).loads("confirm", token[:-2] + "xx")


def test_expired_token(monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = Tokens("s" * 32)
    token = tokens.dumps("confirm", "abc")
    with pytest.raises(TokenError, match="expired"):
        tokens.loads("confirm", token, max_age=-1)


def test_missing_secret_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        Tokens("")
    assert "DIGESTBOT_SECRET_KEY" in (info.value.hint or "")
