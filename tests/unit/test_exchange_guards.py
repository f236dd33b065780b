"""What the token exchange (bridge/core/exchange.py) checks of a verified identity, as a sign-in and a session do:
SCIM (a deactivated or deleted user is refused and audited, SCIM's groups decide the roles), the connector's
``mfa_max_age`` on the injected clock (app and workload paths), and rate limits that a stranger cannot use up:
only the caller's address is charged before the subject token verifies, the app and the user after, in one
round trip. On MemoryStore through the app's test client, as tests/unit/test_exchange.py."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bridge.core.exchange import JWT
from bridge.domain.errors import InvalidIdToken
from bridge.domain.identity import Identity
from bridge.upstream.base import ConnectorPolicy, SubjectToken
from tests.unit.test_exchange import ACCOUNT, EXCHANGE_GRANT, Env, _build, audit_lines, config, form, id_token, post
from tests.unit.test_exchange_workload import gh_token, wl_form, workload_env

SCIM_TOKEN = "scim-unit-token-" + "x" * 32
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"


def scim(env: Env, method: str, path: str, body: Any = None) -> dict[str, Any]:
    r = env.client.open(f"/scim/v2{path}", method=method, json=body,
                        headers={"Authorization": f"Bearer {SCIM_TOKEN}", "Content-Type": "application/scim+json"})
    assert r.status_code in (200, 201, 204), r.get_data(as_text=True)
    return dict(r.get_json() or {}) if r.status_code != 204 else {}


def scim_env(tmp_path: Path, **scim_cfg: Any) -> Env:
    raw = config(tmp_path)
    raw["scim"] = {"token": SCIM_TOKEN, **scim_cfg}
    return _build(raw, tmp_path)


def credentials_records(env: Env) -> list[dict[str, Any]]:
    return [a for a in audit_lines(env) if a.get("type") == "credentials"]


def assert_deprovisioned(env: Env, r: Any, *, calls: int = 0) -> None:
    body = r.get_json()
    assert r.status_code == 403 and body["error"] == "invalid_grant", body
    assert body["error_code"] == "exchange_deprovisioned" and "deactivated" in body["error_description"]
    assert "reactivate" in body["hint"] and r.headers["Cache-Control"] == "no-store"
    assert len(env.sts.calls) == calls and "credentials" not in body


# -- SCIM ------------------------------------------------------------------------------------------------------


def test_a_user_scim_deactivated_gets_no_credentials_and_the_refusal_is_audited(tmp_path: Path) -> None:
    env = scim_env(tmp_path)
    alice = scim(env, "POST", "/Users", {"schemas": [USER], "userName": "alice@example.com", "active": False})
    r = post(env, form())
    assert_deprovisioned(env, r)
    (record,) = credentials_records(env)
    assert record["outcome"] == "failure" and record["error"] == "deprovisioned" and record["app"] == "photos"
    assert record["who"]["email"] == "alice@example.com" and record["target"] == "sandbox/Photos"
    assert id_token()[:40] not in env.audit.read_text()
    scim(env, "PATCH", f"/Users/{alice['id']}", {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                                                 "Operations": [{"op": "replace", "path": "active", "value": True}]})
    scim(env, "POST", "/Groups", {"schemas": [GROUP], "displayName": "photo-users",
                                  "members": [{"value": alice["id"]}]})
    assert post(env, form()).status_code == 200  # reactivated: the exchange works again


def test_a_user_scim_deleted_is_refused_too(tmp_path: Path) -> None:
    env = scim_env(tmp_path)
    alice = scim(env, "POST", "/Users", {"schemas": [USER], "userName": "alice@example.com"})
    scim(env, "DELETE", f"/Users/{alice['id']}")
    assert_deprovisioned(env, post(env, form()))


def test_scims_groups_decide_the_roles_as_at_a_sign_in(tmp_path: Path) -> None:
    env = scim_env(tmp_path)  # groups: replace (the default)
    bob = scim(env, "POST", "/Users", {"schemas": [USER], "userName": "bob@example.com"})
    scim(env, "POST", "/Groups", {"schemas": [GROUP], "displayName": "photo-users", "members": [{"value": bob["id"]}]})
    scim(env, "POST", "/Users", {"schemas": [USER], "userName": "alice@example.com"})  # in no SCIM group
    # the IdP says bob is only a reader; SCIM puts him in photo-users: he gets the role
    r = post(env, form(subject_token=id_token(sub="00ubob", email="bob@example.com", groups=["readers"])))
    assert r.status_code == 200, r.get_json()
    # the IdP says alice is in photo-users; SCIM (replace) says no groups: refused, nothing issued
    refused = post(env, form())
    assert refused.status_code == 400 and refused.get_json()["error_code"] == "exchange_target_not_granted"
    assert len(env.sts.calls) == 1


def test_merge_adds_scims_groups_and_an_unknown_user_is_left_as_the_idp_said(tmp_path: Path) -> None:
    env = scim_env(tmp_path, groups="merge")
    alice = scim(env, "POST", "/Users", {"schemas": [USER], "userName": "alice@example.com"})
    assert post(env, form()).status_code == 200  # the IdP's photo-users kept
    assert alice and post(env, form(subject_token=id_token(sub="00ucarl", email="carl@example.com"))).status_code == 200


def test_a_workload_scim_deactivated_is_refused(tmp_path: Path) -> None:
    env = workload_env(tmp_path, scim={"token": SCIM_TOKEN, "connectors": {"github": "subject"}})
    subject = "repo:octo-org/octo-repo:ref:refs/heads/main"
    scim(env, "POST", "/Users", {"schemas": [USER], "userName": subject, "active": False})
    assert_deprovisioned(env, post(env, wl_form(), origin=None))
    (record,) = credentials_records(env)
    assert record["workload"] == "octo-org/octo-repo" and record["error"] == "deprovisioned" and "app" not in record
    assert post(env, form()).status_code == 200  # the app's connector is not SCIM's here: not asked


# -- mfa_max_age -----------------------------------------------------------------------------------------------


def mfa_env(tmp_path: Path) -> Env:
    raw = config(tmp_path)
    raw["connectors"][0]["step_up"] = {"mfa_max_age": 600}
    raw["mapping"]["rules"][0]["grants"][0]["mfa_required"] = True  # photo-users: Photos only with MFA
    return _build(raw, tmp_path)


def test_an_mfa_sign_in_older_than_mfa_max_age_no_longer_counts(tmp_path: Path) -> None:
    env = mfa_env(tmp_path)
    now = [time.time()]
    env.svc.exchange.clock = lambda: now[0]
    token = id_token(amr=["pwd", "mfa"], auth_time=int(now[0]) - 60)
    assert post(env, form(subject_token=token)).status_code == 200  # MFA a minute ago
    now[0] += 541  # 601 s after the MFA sign-in, on the exchange's clock (the token itself still valid)
    r = post(env, form(subject_token=token))
    body = r.get_json()
    assert r.status_code == 400 and body["error"] == "invalid_grant" and body["error_code"] == "exchange_mfa_required"
    assert "mfa_max_age" in body["error_description"] and "MFA" in body["hint"] and len(env.sts.calls) == 1


def test_without_mfa_the_role_is_refused_clearly(tmp_path: Path) -> None:
    env = mfa_env(tmp_path)
    body = post(env, form(subject_token=id_token(amr=["pwd"]))).get_json()
    assert body["error_code"] == "exchange_mfa_required" and env.sts.calls == []


class MfaWorkload:
    """A workload connector whose tokens say MFA (at ``at``), with ``mfa_max_age`` 600 s."""

    id = name = "github"
    type = "workload"
    allows_unsolicited = False
    exchanges_per_minute = 0
    policy = ConnectorPolicy(mfa_max_age=600)

    def __init__(self, at: int) -> None:
        self.at = at

    def verify_subject_token(self, token: str, *, audiences: tuple[str, ...]) -> SubjectToken:
        if token != "ci-token":
            raise InvalidIdToken("nope", code="subject_token_issuer")
        identity = Identity("github", "ci", "https://ci.example.com", name="ci", mfa=True, authn_time=self.at)
        return SubjectToken(identity, expires_at=int(time.time()) + 300)


def test_mfa_max_age_applies_to_a_workloads_token_too(tmp_path: Path) -> None:
    raw = config(tmp_path)
    raw["mapping"]["accounts"][ACCOUNT]["roles"]["Deployer"] = {}
    raw["mapping"]["rules"].append({"name": "ci-with-mfa", "match": {"mfa": True},
                                    "grants": [{"account": "sandbox", "role": "Deployer"}]})
    env = _build(raw, tmp_path)
    now = [time.time()]
    env.svc.connectors["github"] = MfaWorkload(int(now[0]))  # type: ignore[assignment]
    env.svc.exchange.clock = lambda: now[0]
    data = {"grant_type": EXCHANGE_GRANT, "subject_token": "ci-token", "subject_token_type": JWT,
            "audience": "sandbox/Deployer"}
    assert post(env, data, origin=None).status_code == 200
    now[0] += 601
    r = post(env, data, origin=None)
    assert r.status_code == 400 and r.get_json()["error_code"] == "exchange_target_not_granted"
    assert len(env.sts.calls) == 1


# -- rate limits -----------------------------------------------------------------------------------------------


def test_garbage_tokens_do_not_use_up_the_apps_budget(tmp_path: Path) -> None:
    env = _build(config(tmp_path, rate_limits={"per_app_per_minute": 3, "per_user_per_minute": 3}), tmp_path)
    for _ in range(5):  # anyone can send these: refused at verification, never counted against the app
        r = post(env, form(subject_token=id_token(aud="someone-else")))
        assert r.status_code == 400 and r.get_json()["error_code"] == "exchange_token_audience"
    assert post(env, form()).status_code == 200
    for sub in ("00ubob", "00ucarl"):
        assert post(env, form(subject_token=id_token(sub=sub))).status_code == 200
    r = post(env, form(subject_token=id_token(sub="00udave")))  # the fourth verified one: the app's limit
    assert r.status_code == 429 and r.get_json()["error_code"] == "exchange_rate_limited" and len(env.sts.calls) == 3


def test_the_address_limit_comes_first_and_counts_per_address(tmp_path: Path) -> None:
    raw = config(tmp_path)
    raw["rate_limits"] = {"exchange_per_minute": 2}
    env = _build(raw, tmp_path)
    for _ in range(2):
        assert post(env, form(subject_token="a.b.c")).status_code == 400
    r = post(env, form())  # even a good token: this address is over its limit, nothing verified or issued
    assert r.status_code == 429 and r.get_json()["error_code"] == "exchange_rate_limited"
    assert int(r.headers["Retry-After"]) > 0 and env.sts.calls == []
    other = env.client.post("/oauth/token", data=form(), headers={"Origin": "https://photos.example.com"},
                            environ_base={"REMOTE_ADDR": "192.0.2.7"})
    assert other.status_code == 200  # another address's budget
    assert post(env, wl_form(gh_token()), origin=None).status_code == 429  # the workload path counts it too


def kind(bucket: str) -> str:
    tag, what = bucket.split(":")[:2]
    assert tag == "{exchange}", bucket  # one Cluster slot: counted together in one EVAL
    return f"exchange-{what}"


class CountingLimits:
    """The store's rate limits, counting the calls (each ``hits`` is one Redis round trip)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[list[str]] = []

    def hit(self, bucket: str, limit: int, window: int = 60) -> int:
        raise AssertionError("the exchange counts with hits")

    def hits(self, buckets: list[tuple[str, int]], window: int = 60) -> list[int]:
        self.calls.append([kind(b) for b, _ in buckets])
        return list(self.inner.hits(buckets, window))

    def hits_reading(self, buckets: list[tuple[str, int]], creds: tuple[str, str] | None,
                     window: int = 60) -> tuple[list[int], bytes | None]:
        self.calls.append([kind(b) for b, _ in buckets] + (["creds"] if creds else []))
        waits, blob = self.inner.hits_reading(buckets, creds, window)
        return list(waits), blob


def test_app_and_user_are_counted_in_one_round_trip_after_the_address(tmp_path: Path) -> None:
    env = _build(config(tmp_path), tmp_path)
    limits = CountingLimits(env.svc.store)
    env.svc.exchange.limits = limits  # type: ignore[assignment]
    assert post(env, form()).status_code == 200
    assert limits.calls == [["exchange-address"], ["exchange-user", "exchange-app"]]
    limits.calls.clear()
    assert post(env, form(subject_token="a.b.c")).status_code == 400
    assert limits.calls == [["exchange-address"]]  # refused at verification: the app and user not charged


def test_a_token_verified_already_is_counted_with_the_cache_read_in_one_round_trip(tmp_path: Path) -> None:
    env = _build(config(tmp_path, max_duration=3600), tmp_path)  # 1 h: beyond the cache's refresh window
    limits = CountingLimits(env.svc.store)
    env.svc.exchange.limits = limits  # type: ignore[assignment]
    token = id_token()
    first = post(env, form(subject_token=token)).get_json()
    limits.calls.clear()
    again = post(env, form(subject_token=token))  # verified a moment ago: nothing to protect before the counts
    assert again.status_code == 200 and again.get_json()["credentials"] == first["credentials"]
    assert limits.calls == [["exchange-address", "exchange-user", "exchange-app", "creds"]] and len(env.sts.calls) == 1
    (cached,) = [a for a in credentials_records(env) if a.get("cached")]
    assert cached["app"] == "photos" and cached["outcome"] == "success"
    limits.calls.clear()
    refused = post(env, form(subject_token=token, audience="sandbox/ReadOnly"))  # counted, then refused as before
    assert refused.get_json()["error_code"] == "exchange_target_not_allowed"
    assert limits.calls == [["exchange-address", "exchange-user", "exchange-app"]]


def test_a_remembered_token_still_meets_every_limit(tmp_path: Path) -> None:
    raw = config(tmp_path, rate_limits={"per_app_per_minute": 100, "per_user_per_minute": 2})
    env = _build(raw, tmp_path)
    token = id_token()
    assert [post(env, form(subject_token=token)).status_code for _ in range(3)] == [200, 200, 429]
    raw = config(tmp_path)
    raw["rate_limits"] = {"exchange_per_minute": 2}
    env = _build(raw, tmp_path)
    assert [post(env, form(subject_token=token)).status_code for _ in range(3)] == [200, 200, 429]


def test_one_user_over_their_budget_does_not_lock_the_apps_other_users_out(tmp_path: Path) -> None:
    env = _build(config(tmp_path, rate_limits={"per_app_per_minute": 4, "per_user_per_minute": 2}), tmp_path)
    alice = id_token()
    # alice's valid token, hammered (a fresh token each time: nothing remembered, and remembered alike)
    codes = [post(env, form(subject_token=alice if i % 2 else id_token(jti=str(i)))).status_code for i in range(20)]
    assert codes[:2] == [200, 200] and set(codes[2:]) == {429}
    # her 18 refusals spent nothing of the app's 4: bob and carol still exchange
    for who in ("bob", "carol"):
        token = id_token(sub=f"00u{who}", email=f"{who}@example.com")
        assert post(env, form(subject_token=token)).status_code == 200, who
    assert len(env.sts.calls) <= 4


def test_the_frameworks_own_refusals_at_the_token_endpoint_are_oauth_json(tmp_path: Path) -> None:
    """A body over the size limit (413), a GET (405): an OAuth client reads RFC 6749 §5.2's JSON, never an HTML
    page, and nothing is issued."""
    env = _build(config(tmp_path), tmp_path)
    huge = form(padding="x" * (1024 * 1024 + 1))
    for r, status in ((post(env, huge), 413), (env.client.get("/oauth/token"), 405)):
        assert r.status_code == status and r.mimetype == "application/json", r.get_data(as_text=True)[:200]
        body = r.get_json()
        assert body["error"] == "invalid_request" and body["error_description"] and body["error_code"]
        assert r.headers["Cache-Control"] == "no-store"
    assert credentials_records(env) == []
