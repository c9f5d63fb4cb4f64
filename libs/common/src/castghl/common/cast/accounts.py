"""How every service names a Cast account without revealing its key."""

from __future__ import annotations

import hashlib


def fingerprint(api_key: str) -> str:
    """The first 12 hex of the key's SHA-256: shown in metrics, logs and the console."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:12]
