"""AES-256-GCM sealing with the bridge's cache keys (``cache-*.key`` in ``issuer.keys_dir``).

What the bridge keeps in Redis that would let a reader act as a user is sealed: cached
credentials (bridge/core/credcache.py) and, beside a session, the upstream grant (the IdP's refresh
token) and the pass-through artifact (bridge/core/sessions.py). A Redis dump, replica or backup then
holds none of them in clear. The newest key seals, every key opens (keys rotate by adding one); the
associated data names where the value is stored, so a value copied to another key does not open.
Blob: version byte, key id (8 bytes), nonce (12), ciphertext and tag.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_VERSION = b"\x01"
SEALED = "sealed"  # the one field of a sealed document as the store keeps it


def _kid(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()[:8]


class Sealer:
    """Seal and open values under the cache keys; ``use_keys`` follows a key added while running.

    ``on_unknown_key``: called once when a value names a key this process does not hold (another
    worker may already seal with a key just added to the folder), to re-read the keys first."""

    def __init__(self, keys: Sequence[bytes], on_unknown_key: Callable[[], object] | None = None) -> None:
        if not keys:
            raise ValueError("sealing needs at least one key")
        self.on_unknown_key = on_unknown_key
        self.use_keys(keys)

    def use_keys(self, keys: Sequence[bytes]) -> None:
        if not keys:
            return
        # One assignment: a thread sealing meanwhile sees the old pair or the new one, never a mix.
        self._state = ({_kid(k): AESGCM(k) for k in keys}, _kid(keys[-1]))

    @property
    def keys(self) -> dict[bytes, AESGCM]:
        return self._state[0]

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        keys, current = self._state
        nonce = os.urandom(12)
        return _VERSION + current + nonce + keys[current].encrypt(nonce, plaintext, aad)

    def open(self, blob: bytes, aad: bytes) -> bytes | None:
        """The plaintext, or None: not a sealed blob, sealed under a removed key, or for another place."""
        if not blob or blob[:1] != _VERSION or len(blob) < 1 + 8 + 12 + 16:
            return None
        aead = self._state[0].get(blob[1:9])
        if aead is None and self.on_unknown_key is not None:
            self.on_unknown_key()
            aead = self._state[0].get(blob[1:9])
        if aead is None:
            return None
        try:
            return aead.decrypt(blob[9:21], blob[21:], aad)
        except InvalidTag:
            return None

    def seal_doc(self, doc: Mapping[str, Any], aad: bytes) -> dict[str, str]:
        """A JSON document sealed, as a one-field document for stores that keep mappings."""
        return {SEALED: base64.b64encode(self.seal(json.dumps(doc).encode(), aad)).decode()}

    def open_doc(self, stored: Mapping[str, Any], aad: bytes) -> dict[str, Any] | None:
        """The document ``seal_doc`` sealed, or None when it does not open. A document without the
        sealed field was written before sealing (an upgrade): it is read as it is."""
        if SEALED not in stored:
            return dict(stored)
        try:
            plain = self.open(base64.b64decode(str(stored[SEALED]), validate=True), aad)
            doc = json.loads(plain) if plain is not None else None
        except ValueError:
            return None
        return doc if isinstance(doc, dict) else None
