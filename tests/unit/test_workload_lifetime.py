"""A workload token's maximum lifetime (``max_token_lifetime`` of a ``type: workload`` connector, default 1 h), single
use or not: a token whose ``exp`` is more than that after its ``iat`` is refused (``exchange_token_lifetime``),
however far its ``exp`` — an ``exp`` of 10**20 no longer makes an unused copy from a job log good forever; a
token without ``iat`` is refused too. Through the app's test client (tests/unit/test_exchange_workload.py's
environment)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bridge.config import ConfigError, settings_from_dict
from tests.unit.test_exchange import config, post
from tests.unit.test_exchange_workload import gh_token, wl_form, workload_env


@pytest.mark.parametrize("exp", [10**20, 2 * 3600, 3600 + 1])
def test_a_single_use_token_living_longer_than_max_token_lifetime_is_refused(tmp_path: Path, exp: int) -> None:
    env = workload_env(tmp_path)
    now = int(time.time())
    r = post(env, wl_form(gh_token(iat=now, nbf=now, exp=now + exp if exp < 10**10 else exp)), origin=None)
    body = r.get_json()
    assert r.status_code == 400 and body["error"] == "invalid_grant", body
    assert body["error_code"] == "exchange_token_lifetime" and "longer than the 3600 s" in body["error_description"]
    assert "max_token_lifetime" in body["hint"] and env.sts.calls == []


def test_an_old_token_is_refused_and_an_hour_long_one_passes(tmp_path: Path) -> None:
    env = workload_env(tmp_path)
    now = int(time.time())
    old = post(env, wl_form(gh_token(iat=now - 2 * 3600, nbf=now - 2 * 3600, exp=now + 60)), origin=None)
    assert old.get_json()["error_code"] == "exchange_token_lifetime"  # issued 2 h ago: its exp - iat says so
    assert post(env, wl_form(gh_token(iat=now, exp=now + 3600)), origin=None).status_code == 200
    assert post(env, wl_form(gh_token(iat=None)), origin=None).get_json()["error_code"] == "exchange_token_invalid"


def test_max_token_lifetime_is_per_connector_and_bounded(tmp_path: Path) -> None:
    env = workload_env(tmp_path, max_token_lifetime=3 * 3600)  # e.g. GitLab jobs with a 3 h timeout
    now = int(time.time())
    assert post(env, wl_form(gh_token(iat=now, exp=now + 3 * 3600)), origin=None).status_code == 200
    raw = config(tmp_path)
    raw["connectors"].append({"id": "gh", "type": "workload", "preset": "github_actions", "audiences": ["x"],
                              "max_token_lifetime": 10**6})
    with pytest.raises(ConfigError, match="max_token_lifetime"):
        settings_from_dict(raw)


@pytest.mark.parametrize("times", [{"iat": float("nan")}, {"exp": float("nan")}, {"exp": float("inf")},
                                   {"iat": float("-inf")}], ids=["iat-nan", "exp-nan", "exp-inf", "iat-minus-inf"])
def test_a_token_time_that_is_no_finite_number_is_refused_not_a_500(tmp_path: Path, times: dict[str, float]) -> None:
    """JSON readers take NaN and Infinity, which pass every comparison: a signed token carrying one would skip the
    lifetime bound (iat NaN) or never expire (exp NaN) — refused as a token without that time."""
    env = workload_env(tmp_path)
    r = post(env, wl_form(gh_token(**times)), origin=None)
    body = r.get_json()
    assert r.status_code == 400 and body["error_code"] == "exchange_token_invalid", body
    assert "(a number)" in body["error_description"] and env.sts.calls == []
