"""GHL's user context for a Custom Page: who is signed in to GHL, told by GHL itself.

A Custom Page asks its parent window (`postMessage` `REQUEST_USER_DATA`) and gets back
`REQUEST_USER_DATA_RESPONSE` with a payload GHL encrypted with the app's Shared Secret
(`GHL_SSO_KEY`, CryptoJS's format: `castghl.common.cryptojs`). Only what decrypts with
the secret into the expected JSON object is trusted; anything else is `Unauthorized`,
with no detail about why (a padding oracle learns nothing from it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final

from castghl.common.cryptojs import NotDecrypted, decrypt
from castghl.common.errors import Unauthorized

MAX_PAYLOAD_CHARS: Final = 8192  # GHL's payloads are a few hundred characters
REFUSED: Final = "the GHL user context did not decrypt: open this page inside GHL"


@dataclass(frozen=True)
class GhlUser:
    """The decrypted context: the GHL user and the location they have open, if any."""

    user_id: str
    company_id: str
    role: str  # "admin" | "user"
    type: str  # "agency" | "location"
    location_id: str | None  # `activeLocation`
    name: str

    @property
    def admin(self) -> bool:
        return self.role == "admin"


def user_of(payload: str, secret: str) -> GhlUser:
    try:
        found = json.loads(decrypt(payload[:MAX_PAYLOAD_CHARS], secret))
    except (NotDecrypted, ValueError):  # ValueError: not UTF-8, not JSON
        raise Unauthorized(REFUSED) from None
    if not isinstance(found, dict):
        raise Unauthorized(REFUSED)
    user_id, company_id = found.get("userId"), found.get("companyId")
    if not isinstance(user_id, str) or not isinstance(company_id, str):
        raise Unauthorized(REFUSED)
    location = found.get("activeLocation")
    return GhlUser(user_id=user_id, company_id=company_id, role=str(found.get("role") or ""),
                   type=str(found.get("type") or ""),
                   location_id=location if isinstance(location, str) and location else None,
                   name=str(found.get("userName") or ""))
