"""DPoP nonces (RFC 9449 §8) for the apps that ask for them (``apps[].dpop_nonce: true``): the bridge hands out a
nonce in a ``DPoP-Nonce`` header and takes only proofs whose ``nonce`` claim is a current one, so a proof made
ahead of time (on a device an attacker once held, say) is useless a few minutes later. Pure: no Flask, no Redis;
the keys and the clock are injected (bridge/web/services.py: the credential-cache keys of ``issuer.keys_dir``).

**Stateless**, so every instance and worker takes every other's nonces with no round trip: a nonce is
``HMAC-SHA256(k, client_id ‖ window)`` (the first 16 bytes, base64url), ``window`` the number of
``NONCE_WINDOW`` (300 s) periods since the epoch and ``k`` derived from one of the bridge's credential-cache
keys (``cache-*.key``: the same on every instance, already there; a derived key, never the cache key itself).
Every loaded key checks them; the one that makes them is the newest generated at least ``NONCE_SETTLE``
seconds ago (keys rotate by adding one): a key copied to the instances one by one is on all of them by then,
so no instance hands out a nonce another cannot check yet (the oldest, when every key is newer). A nonce is accepted in
the window it was made and the next one — it lives **5 to 10 minutes** — and, for an instance whose clock is up to
``NONCE_SKEW`` seconds behind the one that made it, from that much early. One app's nonce is not another's.
Compared in constant time (``hmac.compare_digest``), every candidate computed.

A nonce is not a secret (anyone may ask for one) and not single use: the proof's ``jti`` stays single use
(bridge/core/exchange.py ``_proof``); the nonce only bounds how long before its use a proof could be made.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Sequence

from bridge.core.dpop import IAT_WINDOW, DpopRefused, Proof, b64url

NONCE_WINDOW = 300  # seconds: a nonce is accepted in its window and the next (5 to 10 minutes)
NONCE_SKEW = IAT_WINDOW  # seconds another instance's clock may be ahead of this one's
NONCE_BYTES = 16
NONCE_SETTLE = 600  # seconds a new cache key has to reach every instance before it makes nonces
_LABEL = b"federation-bridge/dpop-nonce/v1"  # the derived key's purpose: never the cache key's own use


class DpopNonces:
    """The nonces of the apps in ``apps`` (client ids with ``dpop_nonce``), made and checked under ``keys()``
    (the shared server-side keys, newest last) at ``clock()``. ``fresh`` for the ``DPoP-Nonce`` header of every
    answer of such an app, ``check`` for each proof it sends."""

    def __init__(self, keys: Callable[[], Sequence[bytes]], *, clock: Callable[[], float],
                 apps: Iterable[str] = (), made: Callable[[], Sequence[float]] = tuple) -> None:
        self.keys = keys
        self.made = made  # when each of keys() was generated (epoch seconds; missing or 0: long ago)
        self.clock = clock
        self.apps = frozenset(apps)

    def on(self, client_id: str) -> bool:
        return client_id in self.apps

    def fresh(self, client_id: str) -> str | None:
        """A nonce for ``client_id`` made now (None: the app takes no nonce, or there is no key)."""
        keys = self.keys()
        if not self.on(client_id) or not keys:
            return None
        now, made = self.clock(), self.made()
        settled = [k for i, k in enumerate(keys) if (made[i] if i < len(made) else 0.0) <= now - NONCE_SETTLE]
        return _nonce(settled[-1] if settled else keys[0], client_id, int(now // NONCE_WINDOW))

    def check(self, client_id: str, proof: Proof | None) -> None:
        """``proof``'s nonce is a current one of ``client_id``'s, or ``DpopRefused`` (OAuth ``use_dpop_nonce``):
        no nonce (``dpop_nonce_required``), or one that is not current (``dpop_nonce_stale``: expired, another
        app's, or never the bridge's). A no-op for an app without ``dpop_nonce``, or an exchange without a proof
        (``dpop: insecure_optional``)."""
        if proof is None or not self.on(client_id):
            return
        if proof.nonce is None:
            raise DpopRefused("this app's DPoP proofs must carry the bridge's nonce (apps[].dpop_nonce): the proof "
                              "has no nonce claim", code="dpop_nonce_required", oauth="use_dpop_nonce",
                              hint="Send it again with a new proof whose nonce claim is this answer's DPoP-Nonce "
                                   "header; keep each answer's DPoP-Nonce for the next exchange (RFC 9449 §8).")
        now = self.clock()
        windows = {int(now // NONCE_WINDOW), int(now // NONCE_WINDOW) - 1, int((now + NONCE_SKEW) // NONCE_WINDOW)}
        sent = proof.nonce.encode("utf-8", "replace")
        hits = [hmac.compare_digest(sent, _nonce(k, client_id, w).encode()) for k in self.keys() for w in windows]
        if not any(hits):
            raise DpopRefused("the proof's nonce is not a current nonce of this app (a nonce lives "
                              f"{NONCE_WINDOW // 60} to {2 * NONCE_WINDOW // 60} minutes, and is the app's own)",
                              code="dpop_nonce_stale", oauth="use_dpop_nonce",
                              hint="Send it again with a new proof whose nonce claim is this answer's DPoP-Nonce "
                                   "header (a nonce expires; keep the latest DPoP-Nonce the bridge sent).")


def _nonce(key: bytes, client_id: str, window: int) -> str:
    derived = hmac.new(key, _LABEL, hashlib.sha256).digest()
    mac = hmac.new(derived, f"{client_id}\0{window}".encode(), hashlib.sha256).digest()
    return b64url(mac[:NONCE_BYTES])
