"""`castghl-oauth rotate-keys`: re-encrypt every stored secret under the newest key.

Rotation, as an operator runs it: put a new key first in TOKEN_ENCRYPTION_KEYS on every
replica (new secrets are then written under it; old ones still decrypt), run this once,
then drop the old key. Idempotent: a secret already under the newest key is left alone.
"""

from __future__ import annotations

from typing import Final

from pymongo.asynchronous.collection import AsyncCollection

from castghl.common.crypto import TokenCipher
from castghl.oauth.store import Document, dig

SECRET_PATHS: Final = ("access_token_enc", "refresh_token_enc", "prefs.cast_api_key_enc")
# Whole `prefs`, not `prefs.cast_api_key_enc`: the emulator answers a dotted projection
# with a flat "a.b" key where MongoDB nests it.
_PROJECTION: Final = {"access_token_enc": True, "refresh_token_enc": True, "prefs": True}
_ATTEMPTS: Final = 5


async def rotate_secrets(collection: AsyncCollection[Document], cipher: TokenCipher) -> int:
    """Re-encrypt every secret not yet under the newest key; returns how many."""
    rotated = 0
    async for doc in collection.find({}, projection=_PROJECTION):
        rotated += await _rotate_document(collection, cipher, doc)
    return rotated


async def _rotate_document(collection: AsyncCollection[Document], cipher: TokenCipher,
                           doc: Document) -> int:
    # Compare-and-set on the old ciphertexts, never on `version`: bumping it would void a
    # refresh in flight on a running replica. A lost race re-reads and tries again.
    for _ in range(_ATTEMPTS):
        changes = {path: cipher.rotate(value) for path in SECRET_PATHS
                   if isinstance(value := dig(doc, path), str) and value
                   and cipher.needs_rotation(value)}
        if not changes:
            return 0
        current = {path: dig(doc, path) for path in changes}
        result = await collection.update_one({"_id": doc["_id"], **current}, {"$set": changes})
        if result.matched_count == 1:
            return len(changes)
        found = await collection.find_one({"_id": doc["_id"]})
        if found is None:
            return 0
        doc = found
    raise RuntimeError(f"installation {doc['_id']} kept changing during key rotation")
