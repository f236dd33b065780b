"""Signing keys for what the bridge mints: JWTs (OIDC issuer) and SAML assertions (SAML IdP).

Files live in one directory:
- ``jwt-<UTC stamp>-<alg>.pem``: a JWT signing key (mode 0600);
- ``saml-<UTC stamp>.pem`` + ``saml-<UTC stamp>.crt``: a SAML signing key (0600) and its
  self-signed certificate (RSA ≥ 2048).
- ``cache-<UTC stamp>.key``: a 256-bit AES-GCM key for the server-side credential cache (0600).
Every key is published (JWKS, IdP metadata); the newest of each kind signs (or encrypts). Adding a key and
waiting before removing the old one is how rotation works (issue 7 builds on it).
"""

from __future__ import annotations

import base64
import os
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
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
class SamlKey:
    """A SAML signing key and its certificate (PEM bytes, as xmlsec wants them)."""

    key_pem: bytes
    cert_pem: bytes
    cert: x509.Certificate
    path: Path

    def cert_b64(self) -> str:
        """The certificate's DER in base64, one line (for ds:X509Certificate)."""
        return self._cert_b64

    @cached_property
    def _cert_b64(self) -> str:
        return base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()

    @cached_property
    def private_key(self) -> rsa.RSAPrivateKey:
        """Parsed once per process: PEM parsing would otherwise cost as much as a signature."""
        key = serialization.load_pem_private_key(self.key_pem, password=None)
        assert isinstance(key, rsa.RSAPrivateKey)  # load_keyring refuses anything else
        return key


@dataclass(frozen=True)
class KeyRing:
    keys: tuple[SigningKey, ...]
    saml: tuple[SamlKey, ...] = ()
    cache: tuple[bytes, ...] = ()  # AES-256-GCM keys, oldest first; the newest encrypts

    @property
    def active(self) -> SigningKey:
        return self.keys[-1]

    @property
    def saml_active(self) -> SamlKey | None:
        return self.saml[-1] if self.saml else None

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


def generate_saml_key(directory: Path, *, now: datetime | None = None, subject: str = "Federation Bridge",
                      days: int = 3650, bits: int = 3072) -> SamlKey:
    """Create a SAML signing key (0600) and a self-signed certificate for the IdP metadata."""
    now = now or datetime.now(UTC)
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    from datetime import timedelta

    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=days)).sign(key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    stem = f"saml-{now.strftime('%Y%m%dT%H%M%S%fZ')}"
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    fd = os.open(directory / f"{stem}.pem", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_pem)
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    (directory / f"{stem}.crt").write_bytes(cert_pem)
    return SamlKey(key_pem, cert_pem, cert, directory / f"{stem}.pem")


def generate_cache_key(directory: Path, *, now: datetime | None = None) -> Path:
    """Create a credential-cache encryption key (32 random bytes, base64) with mode 0600."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / f"cache-{(now or datetime.now(UTC)).strftime('%Y%m%dT%H%M%S%fZ')}.key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(base64.b64encode(os.urandom(32)) + b"\n")
    return path


def _load_cache_keys(directory: Path, problems: list[str]) -> list[bytes]:
    out = []
    for path in sorted(directory.glob("cache-*.key")):
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            problems.append(f"{path}: key is readable by others (mode {mode:o}); run chmod 600 {path}")
            continue
        try:
            key = base64.b64decode(path.read_bytes().strip(), validate=True)
        except ValueError:
            key = b""
        if len(key) != 32:
            problems.append(f"{path}: not a base64 256-bit key")
            continue
        out.append(key)
    return out


def _load_saml_keys(directory: Path, problems: list[str]) -> list[SamlKey]:
    out: list[SamlKey] = []
    for path in sorted(directory.glob("saml-*.pem")):
        crt = path.with_suffix(".crt")
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            problems.append(f"{path}: private key is readable by others (mode {mode:o}); run chmod 600 {path}")
            continue
        if not crt.is_file():
            problems.append(f"{path}: its certificate {crt.name} is missing")
            continue
        try:
            key_pem, cert_pem = path.read_bytes(), crt.read_bytes()
            key = serialization.load_pem_private_key(key_pem, password=None)
            cert = x509.load_pem_x509_certificate(cert_pem)
        except (ValueError, TypeError) as e:
            problems.append(f"{path}: not a usable key/certificate pair ({type(e).__name__})")
            continue
        if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < 2048:
            problems.append(f"{path}: SAML signing needs an RSA key of at least 2048 bits")
            continue
        if key.public_key().public_numbers() != cert.public_key().public_numbers():  # type: ignore[union-attr]
            problems.append(f"{crt}: certificate does not match the key {path.name}")
            continue
        out.append(SamlKey(key_pem, cert_pem, cert, path))
    return out


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
    saml = _load_saml_keys(directory, problems)
    cache = _load_cache_keys(directory, problems)
    return (KeyRing(tuple(keys), tuple(saml), tuple(cache)) if keys else None), problems
