"""Signing keys for what the bridge mints: JWTs (OIDC issuer) and SAML assertions (SAML IdP).

Files live in one directory:
- ``jwt-<UTC stamp>-<alg>.pem``: a JWT signing key (mode 0600);
- ``saml-<UTC stamp>.pem`` + ``saml-<UTC stamp>.crt``: a SAML signing key (0600) and its
  self-signed certificate (RSA ≥ 2048).
- ``cache-<UTC stamp>.key``: a 256-bit AES-GCM key for the server-side credential cache and the refresh
  tokens kept beside sessions (bridge/keys/sealing.py) (0600).
Every key is published (JWKS, IdP metadata); the newest of each kind signs (or encrypts).

Rotation (``bridge keys rotate``) adds an optional sidecar ``<key stem>.json`` with
``{"sign_from": epoch, "retire_at": epoch}``: a key is *published* until ``retire_at`` and
*signs* from ``sign_from`` on (the newest such key signs). So a next key is published in the
JWKS / IdP metadata before it signs, and the old one stays published for an overlap, then
drops out by itself. ``KeyRing.view(now)`` is the ring as it stands at ``now`` (time is passed
in: this module reads no clock); keys without a sidecar sign at once and never retire.
"""

from __future__ import annotations

import base64
import json
import os
import stat
from dataclasses import dataclass, replace
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
class Schedule:
    """When a key signs and when it is retired (epoch seconds; None = at once / never)."""

    sign_from: int | None = None
    retire_at: int | None = None

    def published(self, now: float) -> bool:
        return self.retire_at is None or now < self.retire_at

    def signs(self, now: float) -> bool:
        return self.published(now) and (self.sign_from is None or now >= self.sign_from)


def sidecar(path: Path) -> Path:
    """The schedule file of a key file (``jwt-….pem`` → ``jwt-….json``)."""
    return path.with_suffix(".json")


def read_schedule(path: Path) -> Schedule:
    """The key's schedule; raises ValueError for a sidecar that is not ``{sign_from, retire_at}``."""
    side = sidecar(path)
    if not side.is_file():
        return Schedule()
    doc = json.loads(side.read_text(encoding="utf-8"))
    if not isinstance(doc, dict) or set(doc) - {"sign_from", "retire_at"}:
        raise ValueError("expected {\"sign_from\": epoch, \"retire_at\": epoch}")
    values = [doc.get("sign_from"), doc.get("retire_at")]
    if any(v is not None and (not isinstance(v, int) or isinstance(v, bool)) for v in values):
        raise ValueError("sign_from and retire_at must be whole epoch seconds or null")
    return Schedule(values[0], values[1])


def _schedule(path: Path, problems: list[str]) -> Schedule | None:
    """The key's schedule, or None with the problem noted (the key is then left out)."""
    try:
        return read_schedule(path)
    except ValueError as e:
        problems.append(f"{sidecar(path)}: {e}")
        return None


def write_schedule(path: Path, schedule: Schedule) -> None:
    tmp = sidecar(path).with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"sign_from": schedule.sign_from, "retire_at": schedule.retire_at}) + "\n")
    os.replace(tmp, sidecar(path))


def created_at(path: Path) -> int:
    """Creation time from the file name's UTC stamp (``…-20250101T000000000000Z…``)."""
    stamp = path.stem.split("-")[1]
    return int(datetime.strptime(stamp, "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC).timestamp())


@dataclass(frozen=True)
class SigningKey:
    kid: str
    alg: str
    key: RSAKey | ECKey
    path: Path
    schedule: Schedule = Schedule()

    def public_jwk(self) -> dict[str, Any]:
        """The JWKS entry AWS needs: kty, kid, alg, use (docs/aws-rules.md §2.3)."""
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
    schedule: Schedule = Schedule()

    @property
    def kid(self) -> str:
        """The certificate's SHA-256 fingerprint, shortened (for metrics and listings)."""
        return self.cert.fingerprint(hashes.SHA256()).hex()[:16]

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
    cache_made: tuple[float, ...] = ()  # when each was generated (its file name's stamp; 0: not said)

    @property
    def active(self) -> SigningKey:
        return self.keys[-1]

    @property
    def saml_active(self) -> SamlKey | None:
        return self.saml[-1] if self.saml else None

    def jwks(self) -> dict[str, Any]:
        return {"keys": [k.public_jwk() for k in self.keys]}

    def view(self, now: float) -> KeyRing:
        """The ring at ``now``: only published keys, the one that signs last (so ``active`` is it).

        The newest key whose ``sign_from`` has come signs; if none has (every published key is
        still waiting), the oldest published one does rather than none.
        """
        return KeyRing(_arrange(self.keys, now), _arrange(self.saml, now), self.cache, self.cache_made)


def _arrange(keys: tuple[Any, ...], now: float) -> tuple[Any, ...]:
    published = [k for k in keys if k.schedule.published(now)]
    if not published:
        return ()
    signing = [k for k in published if k.schedule.signs(now)]
    active = signing[-1] if signing else published[0]
    return tuple([k for k in published if k is not active] + [active])


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


def _too_open(directory: Path) -> int:
    """Permission bits a private key file must not have.

    Normally 0600 at most. In a Kubernetes Secret volume (kubelet's atomic writer leaves a
    ``..data`` link in the folder) kubelet itself makes files 0440 root:<fsGroup> so a non-root
    pod can read them; group read is accepted there, anything for others never is.
    """
    return 0o037 if (directory / "..data").exists() else 0o077


def generate_cache_key(directory: Path, *, now: datetime | None = None) -> Path:
    """Create a credential-cache encryption key (32 random bytes, base64) with mode 0600."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / f"cache-{(now or datetime.now(UTC)).strftime('%Y%m%dT%H%M%S%fZ')}.key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(base64.b64encode(os.urandom(32)) + b"\n")
    return path


def _load_cache_keys(directory: Path, problems: list[str]) -> list[tuple[bytes, float]]:
    """Each valid ``cache-*.key``, oldest first, with when it was generated (its stamp; 0 when the name has
    none: a key named by hand counts as an old one)."""
    out = []
    for path in sorted(directory.glob("cache-*.key")):
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & _too_open(directory):
            problems.append(f"{path}: key is readable by others (mode {mode:o}); run chmod 600 {path}")
            continue
        try:
            key = base64.b64decode(path.read_bytes().strip(), validate=True)
        except ValueError:
            key = b""
        if len(key) != 32:
            problems.append(f"{path}: not a base64 256-bit key")
            continue
        try:
            made = datetime.strptime(path.stem.removeprefix("cache-"), "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC)
        except ValueError:
            out.append((key, 0.0))
        else:
            out.append((key, made.timestamp()))
    return out


def _load_saml_keys(directory: Path, problems: list[str]) -> list[SamlKey]:
    out: list[SamlKey] = []
    for path in sorted(directory.glob("saml-*.pem")):
        crt = path.with_suffix(".crt")
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & _too_open(directory):
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
        if (schedule := _schedule(path, problems)) is not None:
            out.append(SamlKey(key_pem, cert_pem, cert, path, schedule))
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
        if mode & _too_open(directory):
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
        if (schedule := _schedule(path, problems)) is not None:
            keys.append(SigningKey(key.thumbprint(), alg, key, path, schedule))
    if not keys and not problems:
        problems.append(f"{directory}: no signing keys (run `bridge keys generate --dir {directory}`)")
    saml = _load_saml_keys(directory, problems)
    cache = _load_cache_keys(directory, problems)
    return (KeyRing(tuple(keys), tuple(saml), tuple(k for k, _ in cache), tuple(t for _, t in cache))
            if keys else None), problems


def rotate(directory: Path, kind: str, *, now: int, publish_for: int, overlap: int, alg: str = "RS256",
           saml_bits: int = 3072) -> tuple[SigningKey | SamlKey, list[Path]]:
    """Add the next key of ``kind`` (``jwt``/``saml``): published now, signing from ``now + publish_for``;
    every older key of that kind still published retires at ``sign_from + overlap``.

    Returns the new key and the key files whose retirement was scheduled. Call ``prune`` to
    delete keys already retired.
    """
    ring, problems = load_keyring(directory)
    if ring is None:
        raise ValueError("; ".join(problems) or f"{directory}: no keys to rotate")
    sign_from = now + publish_for
    olds: tuple[SigningKey | SamlKey, ...] = ring.keys if kind == "jwt" else ring.saml
    # File names sort by creation time: the new key is the newest.
    new: SigningKey | SamlKey = (generate_key(directory, alg) if kind == "jwt"
                                 else generate_saml_key(directory, bits=saml_bits))
    write_schedule(new.path, Schedule(sign_from=sign_from))
    scheduled = []
    for old in olds:
        if old.schedule.published(now) and old.schedule.retire_at is None:
            write_schedule(old.path, replace(old.schedule, retire_at=sign_from + overlap))
            scheduled.append(old.path)
    return replace(new, schedule=Schedule(sign_from=sign_from)), scheduled


def prune(directory: Path, *, now: float) -> list[Path]:
    """Delete every key (and certificate and schedule) retired before ``now``; return the key files."""
    removed = []
    for path in sorted([*directory.glob(f"{_PREFIX}*.pem"), *directory.glob("saml-*.pem")]):
        try:
            schedule = read_schedule(path)
        except ValueError:
            continue
        if not schedule.published(now):
            for p in (path, path.with_suffix(".crt"), sidecar(path)):
                p.unlink(missing_ok=True)
            removed.append(path)
    return removed


def expiry(key: SigningKey | SamlKey, *, max_age_days: int) -> int:
    """When the key stops being usable: its retirement, its certificate's end (SAML), or for a JWT
    key without a retirement date, ``max_age_days`` after it was created (rotation is due)."""
    ends = [key.schedule.retire_at] if key.schedule.retire_at is not None else []
    if isinstance(key, SamlKey):
        ends.append(int(key.cert.not_valid_after_utc.timestamp()))
    elif not ends:
        ends.append(created_at(key.path) + max_age_days * 86400)
    return min(ends)
