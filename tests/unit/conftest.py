"""Fixtures of the unit tests (no peers, no state outside ``tmp_path``)."""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import joserfc._rfc7518.rsa_key as joserfc_rsa
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def demo_config(tmp_path: Path) -> Path:
    """The shipped ``config/demo.yaml``, copied into a fresh checkout layout under ``tmp_path``.

    The demo config points ``audit.path`` (and, by default, ``issuer.keys_dir``) into ``../.demo``,
    the folder ``bridge demo`` creates. The copy keeps the file byte for byte and gives it its own
    empty ``.demo`` folder, so the real config check runs unchanged without depending on a demo
    (or an integration test) having run in this checkout.
    """
    cfg = tmp_path / "checkout" / "config" / "demo.yaml"
    cfg.parent.mkdir(parents=True)
    shutil.copyfile(ROOT / "config" / "demo.yaml", cfg)
    (tmp_path / "checkout" / ".demo").mkdir()
    return cfg


class PremadeRsaKeys:
    """``rsa.generate_private_key`` for the unit tests: the first ``size`` keys of each size are made for real,
    then handed out again in turn. RSA key generation was ~4 CPU s of the unit suite (60-odd keys); no test
    makes more than three, so any ``size`` in a row are distinct keys, as freshly made ones would be."""

    def __init__(self, make: Callable[..., rsa.RSAPrivateKey], size: int = 8) -> None:
        self.make, self.size = make, size
        self.made: dict[tuple[int, int], list[rsa.RSAPrivateKey]] = {}
        self.turns: dict[tuple[int, int], Iterator[int]] = {}

    def __call__(self, public_exponent: int, key_size: int, backend: Any = None) -> rsa.RSAPrivateKey:
        kind = (public_exponent, key_size)
        made = self.made.setdefault(kind, [])
        turn = next(self.turns.setdefault(kind, itertools.count()))
        if len(made) < self.size:
            made.append(self.make(public_exponent=public_exponent, key_size=key_size))
            return made[-1]
        return made[turn % self.size]


@pytest.fixture(scope="session")
def rsa_key_pool() -> PremadeRsaKeys:
    """The pool, made once per session."""
    return PremadeRsaKeys(rsa.generate_private_key)


@pytest.fixture(autouse=True)
def premade_rsa_keys(rsa_key_pool: PremadeRsaKeys) -> Iterator[PremadeRsaKeys]:
    """RSA keys from the session's pool *during each unit test* (the bridge's own generate_saml_key and joserfc's
    RSAKey.generate_key call these two names); the key files, certificates and key rings are still made per
    test. Per test, not for the session: the suite runs unit and integration tests in one random order, and a
    patch left in place for the session handed the integration tests pooled keys too — a test's "another
    key" could then be the very key its IdP signs with. Integration tests and every subprocess make keys for
    real."""
    before = rsa.generate_private_key, joserfc_rsa.generate_private_key
    rsa.generate_private_key = rsa_key_pool  # type: ignore[assignment]
    joserfc_rsa.generate_private_key = rsa_key_pool  # type: ignore[assignment]
    yield rsa_key_pool
    rsa.generate_private_key, joserfc_rsa.generate_private_key = before
