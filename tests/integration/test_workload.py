"""A workload connector against the stand-in GitHub Actions issuer (tests/peers/workload_issuer.py: discovery and
JWKS over HTTP on 127.0.0.1, tokens with GitHub's published claim set): the right repository and branch get the
rule's role, another branch does not; every bad token is refused with its own message and changes nothing (no
key fetch, no id remembered); keys are cached (no network on the hot path) and refetched when the issuer
rotates; and the replay store on a real redis-server refuses a token's second exchange."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from joserfc.jwk import RSAKey

from bridge import mapping
from bridge.domain.errors import InvalidIdToken, UpstreamUnavailable
from bridge.storage.redis import RedisStore
from bridge.upstream.workload import MIN_REFRESH, WorkloadConnector
from bridge.upstream.workload_settings import WorkloadConnectorSettings
from tests.clock import Clock
from tests.peers.workload_issuer import WorkloadIssuer, ec_key, running

pytestmark = pytest.mark.integration

DEPLOYER = "arn:aws:iam::123456789012:role/Deployer"
RULES = mapping.load_mapping({"rules": [{
    "name": "deploy-from-main", "connectors": ["github"],
    "match": {"all": [{"claim": "claims.repository", "equals": "octo-org/octo-repo"},
                      {"claim": "claims.ref", "equals": "refs/heads/main"}]},
    "grants": [{"role_arn": DEPLOYER, "session_name": "gha-{claims.run_id}"}]}]})
DEFAULTS = mapping.GrantDefaults("sts.amazonaws.com")


@pytest.fixture
def issuer() -> Iterator[WorkloadIssuer]:
    with running() as iss:
        yield iss


def connector(issuer: WorkloadIssuer, clock: Clock | None = None, **kw: Any) -> WorkloadConnector:
    cfg = WorkloadConnectorSettings(**{"id": "github", "type": "workload", "preset": "github_actions",
                                       "issuer": issuer.issuer, "audiences": [issuer.audience], "http_timeout": 5,
                                       **kw})
    return WorkloadConnector(cfg, clock=clock or Clock(float(issuer.claims()["iat"])))


def test_the_right_repository_and_branch_get_the_role_another_branch_does_not(issuer: WorkloadIssuer) -> None:
    c = connector(issuer)
    main = c.verify_subject_token(issuer.mint(environment=None), audiences=())
    assert main.identity.subject == "repo:octo-org/octo-repo:ref:refs/heads/main"
    assert main.single_use and main.token_id and main.expires_at > 0
    (grant,) = mapping.decide(RULES, main.identity, DEFAULTS).grants
    assert grant.role_arn == DEPLOYER and grant.session_name == "gha-5431"
    other = c.verify_subject_token(issuer.mint(environment=None, ref="refs/heads/feature-x"), audiences=())
    assert other.identity.claims["ref"] == "refs/heads/feature-x"
    assert not mapping.decide(RULES, other.identity, DEFAULTS).grants
    (why,) = mapping.explain(RULES, other.identity, default_audience="sts.amazonaws.com")
    assert not why.matched and "claims.ref" in why.to_json()["reason"]


def _bad(issuer: WorkloadIssuer, case: str) -> str:
    forger, rsa_forger = ec_key("gh-1"), RSAKey.generate_key(2048, parameters={"kid": "gh-1"})
    return {
        "expired": lambda: issuer.mint(now=1_700_000_000),
        "wrong audience": lambda: issuer.mint(aud="https://github.com/octo-org"),
        "wrong issuer": lambda: issuer.mint(iss="https://token.actions.example.net"),
        "alg none": lambda: issuer.mint(alg="none"),
        "alg HS256": lambda: issuer.mint(alg="HS256"),
        "unknown kid": lambda: issuer.mint(signer=ec_key("not-published")),
        "forged with a published kid": lambda: issuer.mint(signer=rsa_forger),
        "alg not fitting the key": lambda: issuer.mint(signer=forger, alg="ES256"),
        "missing jti": lambda: issuer.mint(jti=None),
        "not yet valid": lambda: issuer.mint(nbf=issuer.claims()["iat"] + 3600),
        "missing repository": lambda: issuer.mint(repository=None),
        "not a JWT": lambda: "not-a-token",
    }[case]()


BAD = {
    "expired": "workload token: expired",
    "wrong audience": "workload token: audience ['https://github.com/octo-org'] is not one this connector accepts",
    "wrong issuer": "workload token: issuer 'https://token.actions.example.net' is not this connector's",
    "alg none": "workload token: alg 'none' is not allowed (allowed: RS256, ES256; never none or HS*)",
    "alg HS256": "workload token: alg 'HS256' is not allowed",
    "unknown kid": "workload token: signing key 'not-published' is not among the issuer's published keys",
    "forged with a published kid": "workload token: the signature does not verify with the issuer's keys",
    "alg not fitting the key": "workload token: its alg ES256 does not fit the issuer's key 'gh-1'",
    "missing jti": "workload token: no jti, and this connector (github_actions) exchanges each token once only",
    "not yet valid": "workload token: not valid yet (nbf)",
    "missing repository": "workload token: the token has no repository claim",
    "not a JWT": "workload token: not a signed JWT",
}


CODES = {"wrong issuer": "subject_token_issuer", "expired": "subject_token_expired",
         "wrong audience": "subject_token_audience"}


@pytest.mark.parametrize("case", sorted(BAD))
def test_each_bad_token_is_refused_with_its_own_message(issuer: WorkloadIssuer, redis_url: str, case: str) -> None:
    c = connector(issuer)
    c.verify_subject_token(issuer.mint(), audiences=())  # keys fetched once, before
    fetches = issuer.jwks_fetches
    token = _bad(issuer, case)
    with pytest.raises(InvalidIdToken) as e:
        c.verify_subject_token(token, audiences=())
    assert e.value.detail.startswith(BAD[case]), e.value.detail
    assert e.value.code == CODES.get(case, "invalid_id_token")  # what the token exchange words its answer by
    assert token not in e.value.detail and e.value.status == 401
    # Nothing changed: at most the one refetch an unknown kid is allowed, and the connector still verifies.
    assert issuer.jwks_fetches - fetches == (1 if case == "unknown kid" else 0)
    assert c.verify_subject_token(issuer.mint(), audiences=()).identity


def test_another_issuers_token_is_told_apart_before_any_key_is_fetched(issuer: WorkloadIssuer) -> None:
    """The exchange tries each of an app's connectors: a token of another issuer costs this one no fetch."""
    with pytest.raises(InvalidIdToken) as e:
        connector(issuer).verify_subject_token(issuer.mint(iss="https://gitlab.example.net", header={"kid": "gl-9"}))
    assert e.value.code == "subject_token_issuer"
    assert "'https://gitlab.example.net' is not this connector's" in e.value.detail
    assert (issuer.discovery_fetches, issuer.jwks_fetches) == (0, 0)


def test_the_exchange_may_narrow_the_audiences(issuer: WorkloadIssuer) -> None:
    c = connector(issuer, audiences=[issuer.audience, "https://other.test"])
    assert c.verify_subject_token(issuer.mint(), audiences=(issuer.audience,)).identity
    with pytest.raises(InvalidIdToken, match="none in common with the exchange"):
        c.verify_subject_token(issuer.mint(), audiences=("https://not-configured.test",))
    with pytest.raises(InvalidIdToken, match=r"audience \['https://bridge.test'\] is not one this connector accepts "
                                             r"\(https://other.test\)"):
        c.verify_subject_token(issuer.mint(), audiences=("https://other.test",))


def test_keys_are_cached_refetched_on_rotation_and_kept_when_the_issuer_is_down(issuer: WorkloadIssuer) -> None:
    clock = Clock(float(issuer.claims()["iat"]))
    c = connector(issuer, clock)
    for _ in range(20):
        c.verify_subject_token(issuer.mint(), audiences=())
    assert (issuer.discovery_fetches, issuer.jwks_fetches) == (1, 1)  # no network on the hot path
    issuer.rotate("gh-2")
    assert c.verify_subject_token(issuer.mint(), audiences=()).identity  # unknown kid: fetched once more
    assert issuer.jwks_fetches == 2
    issuer.rotate("gh-3")
    with pytest.raises(InvalidIdToken, match="'gh-3' is not among"):  # a second rotation within a minute waits
        c.verify_subject_token(issuer.mint(), audiences=())
    assert issuer.jwks_fetches == 2
    clock.now += MIN_REFRESH
    assert c.verify_subject_token(issuer.mint(), audiences=()).identity
    assert issuer.jwks_fetches == 3
    issuer.down = True
    clock.now += 3600  # the keys are due, the issuer does not answer: the last good keys serve
    assert c.verify_subject_token(issuer.mint(now=int(clock.now)), audiences=()).identity
    assert c.verify_subject_token(issuer.mint(now=int(clock.now)), audiences=()).identity
    assert issuer.down_hits == 1  # one try, not one per token
    assert issuer.discovery_fetches == 1  # the discovery document was read once, its jwks_uri kept


def test_an_issuer_that_never_answered_is_unavailable_not_invalid(issuer: WorkloadIssuer) -> None:
    issuer.down = True
    with pytest.raises(UpstreamUnavailable, match="discovery"):
        connector(issuer).verify_subject_token(issuer.mint(), audiences=())


def test_a_configured_jwks_uri_skips_discovery(issuer: WorkloadIssuer) -> None:
    c = connector(issuer, jwks_uri=f"{issuer.issuer}/.well-known/jwks")
    assert c.verify_subject_token(issuer.mint(), audiences=()).identity
    assert (issuer.discovery_fetches, issuer.jwks_fetches) == (0, 1)


def test_a_replayed_token_is_refused_by_the_replay_store_on_redis(issuer: WorkloadIssuer, redis_url: str) -> None:
    """What the exchange does with a single-use subject token: ``first_use`` of its jti until it ends."""
    client = redis.Redis.from_url(redis_url)
    store = RedisStore(client, "workload-it:")
    try:
        c = connector(issuer)
        token = issuer.mint()
        first = c.verify_subject_token(token, audiences=())
        kind = f"jti:{c.id}"
        assert first.single_use and first.token_id is not None
        assert store.first_use(kind, first.token_id, first.expires_at) is True
        again = c.verify_subject_token(token, audiences=())  # the token itself still verifies…
        assert store.first_use(kind, str(again.token_id), again.expires_at) is False  # …its second use is refused
        assert store.first_use(kind, str(c.verify_subject_token(issuer.mint(), audiences=()).token_id),
                               first.expires_at) is True  # a new token of the same job is fine
        keys = [k.decode() for k in client.scan_iter(match="workload-it:*")]
        assert len(keys) == 2 and all(k.startswith("workload-it:replay:jti:github:") for k in keys)
        assert first.token_id not in "".join(keys)  # hashed: the store never holds the id
        ttl = client.ttl(keys[0])
        assert 0 < ttl <= first.expires_at - int(time.time()) + 1
    finally:
        for k in client.scan_iter(match="workload-it:*"):
            client.delete(k)


def test_check_config_probe_reads_the_workload_keys(issuer: WorkloadIssuer, tmp_path: Any) -> None:
    from bridge.commands.probe import ProbeReport, _probe_workload
    from bridge.config import Settings

    cfg = WorkloadConnectorSettings(id="github", type="workload", preset="github_actions", issuer=issuer.issuer,
                                    audiences=["a"])
    settings = Settings.model_validate({"base_url": "https://bridge.test", "secret_key": "x" * 32,
                                        "issuer": {"url": "https://bridge.test"}, "connectors": [cfg.model_dump()]})
    report = ProbeReport()
    _probe_workload(cfg, settings, report)
    assert report.lines == [f"connector github: workload keys from discovery of {issuer.issuer}: 1 key(s) (gh-1); "
                            "no sign-ins (token exchange only)"]
    issuer.down = True
    with pytest.raises(UpstreamUnavailable, match="discovery"):
        _probe_workload(cfg, settings, ProbeReport())
