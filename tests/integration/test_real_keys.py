"""Integration tests make their keys for real, whatever unit tests ran before them in the same random-order
session (tests/unit/conftest.py hands out pooled RSA keys during each unit test only): a test's "another key"
must never be a key some IdP of the session signs with."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from bridge.keys.signing import generate_saml_key

pytestmark = pytest.mark.integration


def test_rsa_keys_are_made_for_real_here(tmp_path: Path) -> None:
    assert getattr(rsa.generate_private_key, "__module__", "").startswith("cryptography")
    numbers = {generate_saml_key(tmp_path / str(i), bits=2048).private_key.private_numbers().p for i in range(9)}
    assert len(numbers) == 9  # a pool of 8 would repeat one
