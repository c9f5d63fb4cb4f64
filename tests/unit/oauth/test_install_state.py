"""The OAuth `state`: ours and young is accepted; anything else is refused by kind."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from castghl.oauth.install_state import BadState, StateSigner

NOW = 1_800_000_000.0


def signer(now: float = NOW, secret: str = "client-secret") -> StateSigner:
    return StateSigner(secret, ttl_seconds=600, clock=lambda: now)


@pytest.mark.parametrize("user_type", ["Location", "Company"])
def test_a_fresh_state_round_trips_its_user_type(user_type: str) -> None:
    state = signer().issue(user_type)  # type: ignore[arg-type]
    assert signer(NOW + 599).check(state) == user_type


def _tamper_type(state: str) -> str:
    issued, nonce, _, mac = state.split(".")
    return f"{issued}.{nonce}.C.{mac}"


@pytest.mark.parametrize(("make", "problem"), [
    (lambda s: signer(NOW + 601).check(s), "expired"),
    (lambda s: signer(NOW - 3600).check(s), "expired"),  # far in the future: not skew
    (lambda s: signer(secret="another-app").check(s), "forged"),
    (lambda s: signer().check(_tamper_type(s)), "forged"),
    (lambda s: signer().check(s[:-2]), "forged"),
    (lambda s: signer().check("garbage"), "forged"),
    (lambda s: signer().check(""), "forged"),
    (lambda s: signer().check("é." * 50), "forged"),
    (lambda s: signer().check(s + "x" * 300), "forged"),
], ids=["expired", "from-the-future", "other-key", "type-changed", "truncated", "garbage",
        "empty", "non-ascii", "oversized"])
def test_bad_states_are_refused_by_kind(make: Callable[[str], object], problem: str) -> None:
    state = signer().issue()
    with pytest.raises(BadState) as refused:
        make(state)
    assert refused.value.problem == problem


def test_states_are_unique() -> None:
    assert signer().issue() != signer().issue()
