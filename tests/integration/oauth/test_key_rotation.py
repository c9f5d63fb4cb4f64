"""Key rotation: `castghl-oauth rotate-keys` under "new,old", then the old key is dropped
and every stored secret still decrypts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from .conftest import AUTH, Callers, Stack, install, serve

LOCATION = "loc_sandbox_1"
CAST_KEY = "cast_" + "fedcba9876543210" * 4
SECRET_FIELDS = ("access_token_enc", "refresh_token_enc")


def rotate_keys(stack: Stack, keys: str) -> subprocess.CompletedProcess[str]:
    exe = str(Path(sys.executable).with_name("castghl-oauth"))
    env = {"PATH": os.environ.get("PATH", ""), **stack.env, "TOKEN_ENCRYPTION_KEYS": keys,
           "BASE_URL": "http://127.0.0.1:1"}
    return subprocess.run([exe, "rotate-keys"], env=env, capture_output=True, text=True,
                          timeout=60, check=False)


async def test_rotate_keys_then_drop_the_old_key_and_everything_still_decrypts(
        stack: Stack, callers: Callers, cast_sim: Any) -> None:
    cast_sim.knobs.api_keys = [*cast_sim.knobs.api_keys, CAST_KEY]  # a key Cast accepts
    old, new = stack.keys
    with serve(stack, token_encryption_keys=old) as service:
        assert (await install(service.url)).status_code == 200
        async with httpx.AsyncClient(base_url=service.url, headers=AUTH) as admin:
            assert (await admin.put(f"/admin/installations/{LOCATION}",
                                    json={"cast_api_key": CAST_KEY})).status_code == 200
    before = stack.docs()[f"location:{LOCATION}"]

    first = rotate_keys(stack, f"{new},{old}")
    again = rotate_keys(stack, f"{new},{old}")

    assert first.returncode == 0, first.stderr
    assert "re-encrypted 3 stored secrets" in first.stdout
    assert "re-encrypted 0 stored secrets" in again.stdout  # idempotent
    after = stack.docs()[f"location:{LOCATION}"]
    for field in SECRET_FIELDS:
        assert after[field] != before[field]
    assert after["version"] == before["version"]  # a refresh in flight is not voided
    with serve(stack, token_encryption_keys=new) as service:
        oauth = callers.to(service.url)
        token = await oauth.token(LOCATION)
        assert stack.ghl.token_works(token, LOCATION)
        assert (await oauth.location(LOCATION)).cast_api_key == CAST_KEY
        async with httpx.AsyncClient(base_url=service.url, headers=AUTH) as admin:
            shown = (await admin.get(f"/admin/installations/{LOCATION}")).json()
        assert shown["settings"]["cast_api_key"] == "cast_…3210"
