"""Signing keys for the tokens the bridge mints (the OIDC issuer AWS trusts).

Keys are PEM files named ``jwt-<UTC stamp>-<alg>.pem`` in one directory, mode 0600.
Every key in the directory is published in the JWKS; the newest one signs. Adding a key
and waiting before removing the old one is how rotation works (issue 7 builds on it).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from joserfc.jwk import ECKey, RSAKey

SUPPORTED_ALGS = ("RS256", "ES256")
_PREFIX = "jwt-"


@dataclass(frozen=True)
class SigningKey:
    kid: str
    alg: str
    key: RSAKey | ECKey
    path: Path

    def public_jwk(self) -> dict[str, Any]:
        """The JWKS entry AWS needs: kty, kid, alg, use (spec §2.3)."""
        d: dict[str, Any] = dict(self.key.as_dict(private=False))
        d.update(kid=self.kid, alg=self.alg, use="sig")
        return d


@dataclass(frozen=True)
class KeyRing:
    keys: tuple[SigningKey, ...]

    @property
    def active(self) -> SigningKey:
        return self.keys[-1]

    def jwks(self) -> dict[str, Any]:
        return {"keys": [k.public_jwk() for k in self.keys]}


def generate_key(directory: Path, alg: str = "RS256", *, now: datetime | None = None) -> SigningKey:
    """Create a new signing key file (RSA 2048 for RS256, P-256 for ES256) with mode 0600."""
    if alg not in SUPPORTED_ALGS:
        raise ValueError(f"unsupported algorithm {alg!r}; use one of {', '.join(SUPPORTED_ALGS)}")
    key: RSAKey | ECKey = RSAKey.generate_key(2048) if alg == "RS256" else ECKey.generate_key("P-256")
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S%fZ")
    path = directory / f"{_PREFIX}{stamp}-{alg}.pem"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.as_pem(private=True))
    return SigningKey(key.thumbprint(), alg, key, path)


def load_keyring(directory: Path) -> tuple[KeyRing | None, list[str]]:
    """Load every key in ``directory``; return the ring (None if unusable) and every problem."""
    problems: list[str] = []
    if not directory.is_dir():
        return None, [f"{directory}: key directory does not exist (run `bridge keys generate --dir {directory}`)"]
    keys: list[SigningKey] = []
    for path in sorted(directory.glob(f"{_PREFIX}*.pem")):
        alg = path.stem.rsplit("-", 1)[-1]
        if alg not in SUPPORTED_ALGS:
            problems.append(f"{path}: name must end in -RS256.pem or -ES256.pem")
            continue
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            problems.append(f"{path}: private key is readable by others (mode {mode:o}); run chmod 600 {path}")
            continue
        try:
            data = path.read_bytes()
            key: RSAKey | ECKey = RSAKey.import_key(data) if alg == "RS256" else ECKey.import_key(data)
        except Exception as e:  # noqa: BLE001 - any parse failure is a config problem to report
            problems.append(f"{path}: not a valid {alg} private key ({type(e).__name__})")
            continue
        if not key.is_private:
            problems.append(f"{path}: holds a public key; a private key is needed to sign")
            continue
        if isinstance(key, RSAKey) and key.private_key is not None and key.private_key.key_size < 2048:
            problems.append(f"{path}: RSA key is shorter than 2048 bits")
            continue
        keys.append(SigningKey(key.thumbprint(), alg, key, path))
    if not keys and not problems:
        problems.append(f"{directory}: no signing keys (run `bridge keys generate --dir {directory}`)")
    return (KeyRing(tuple(keys)) if keys else None), problems
