"""The strict AWS-rules validator (bridge/aws/validate.py, docs/aws-rules.md §2.7).

Every rule gets at least one token that breaks only that rule, so a test shows both that the
rule fires and that it does not drag unrelated rules along. Problems are compared as their
text (``str(p)``, what `bridge verify` prints); their fields are checked separately below.
Tokens are minted with the real minting code and real keys; bad tokens are signed with joserfc, or by hand with
``cryptography`` where joserfc refuses (crit headers, ``none``, 1024-bit RSA).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from joserfc import jwt

from bridge.aws.token import mint_token, token_claims
from bridge.aws.validate import (
    MAX_TOKEN_LEN,
    SOURCE_IDENTITY_CLAIM,
    TAGS_CLAIM,
    Problem,
    ValidationFailed,
    assert_valid_jwt,
    validate_assume_params,
    validate_jwt,
)
from bridge.domain.identity import Grant, Identity
from bridge.keys.signing import KeyRing, SigningKey, generate_key

NOW = 1_800_000_000
ISSUER = "https://bridge.example.com"
AUD = "sts.amazonaws.com"
ROLE = "arn:aws:iam::123456789012:role/Admin"

GRANT = Grant(
    role_arn=ROLE,
    account_id="123456789012",
    label="Admin",
    session_name="alice",
    via="admins",
    source_identity="alice@example.com",
    tags={"Project": "Automation", "CostCenter": "987654"},
    transitive_keys=("Project",),
)
IDENTITY = Identity(
    connector_id="corp",
    subject="alice-upstream-id",
    issuer="https://idp.example.com",
    email="alice@example.com",
)


# --------------------------------------------------------------------------- helpers


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def segment(obj: Any) -> str:
    return b64(json.dumps(obj, separators=(",", ":")).encode())


def sign_rsa_by_hand(private_key: rsa.RSAPrivateKey, header: dict[str, Any], claims: dict[str, Any]) -> str:
    """RS256 compact JWS built without joserfc (it refuses crit headers and short keys)."""
    signing_input = f"{segment(header)}.{segment(claims)}"
    sig = private_key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64(sig)}"


def unsigned(header: dict[str, Any], claims: dict[str, Any], sig: bytes = b"") -> str:
    return f"{segment(header)}.{segment(claims)}.{b64(sig)}"


def jwks_of(*keys: SigningKey) -> dict[str, Any]:
    return KeyRing(tuple(keys)).jwks()


def good_claims(**overrides: Any) -> dict[str, Any]:
    claims = token_claims(GRANT, IDENTITY, issuer=ISSUER, audience=AUD, now=NOW)
    claims.update(overrides)
    return claims


def sign(key: SigningKey, claims: dict[str, Any], **header_extra: Any) -> str:
    header = {"alg": key.alg, "kid": key.kid, **header_extra}
    return jwt.encode(header, claims, key.key, algorithms=[key.alg])


def texts(problems: list[Problem]) -> list[str]:
    assert all(isinstance(p, Problem) for p in problems), problems
    return [str(p) for p in problems]


def check_problems(token: str, key: SigningKey, **kw: Any) -> list[Problem]:
    args: dict[str, Any] = {"jwks": jwks_of(key), "issuer": ISSUER, "audiences": {AUD}, "now": NOW}
    args.update(kw)
    return validate_jwt(token, **args)


def check(token: str, key: SigningKey, **kw: Any) -> list[str]:
    return texts(check_problems(token, key, **kw))


def with_tags(tags_claim: Any) -> dict[str, Any]:
    return good_claims(**{TAGS_CLAIM: tags_claim})


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def keys_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("validate-keys")


@pytest.fixture(scope="module")
def rsa_key(keys_root: Path) -> SigningKey:
    return generate_key(keys_root / "rsa", "RS256")


@pytest.fixture(scope="module")
def ec_key(keys_root: Path) -> SigningKey:
    return generate_key(keys_root / "ec", "ES256")


@pytest.fixture(scope="module")
def other_rsa_key(keys_root: Path) -> SigningKey:
    return generate_key(keys_root / "other", "RS256")


@pytest.fixture(params=["RS256", "ES256"])
def key(request: pytest.FixtureRequest, rsa_key: SigningKey, ec_key: SigningKey) -> SigningKey:
    return rsa_key if request.param == "RS256" else ec_key


# --------------------------------------------------------------------------- good tokens


def test_minted_token_passes_every_rule(key: SigningKey) -> None:
    token = mint_token(GRANT, IDENTITY, key, issuer=ISSUER, audience=AUD, now=NOW)
    claims = json.loads(unb64(token.split(".")[1]))
    # The token really carries what the rules look at, so [] below is not vacuous.
    assert claims[TAGS_CLAIM]["principal_tags"] == {"Project": ["Automation"], "CostCenter": ["987654"]}
    assert claims[SOURCE_IDENTITY_CLAIM] == "alice@example.com"
    assert check(token, key) == []
    discovery = {"issuer": ISSUER, "jwks_uri": f"{ISSUER}/.well-known/jwks.json"}
    assert check(token, key, discovery=discovery) == []
    assert_valid_jwt(token, jwks=jwks_of(key), issuer=ISSUER, audiences={AUD}, now=NOW)


def test_token_without_tags_or_source_identity_passes(key: SigningKey) -> None:
    bare = Grant(role_arn=ROLE, account_id="123456789012", label="Admin", session_name="alice", via="x")
    token = mint_token(bare, IDENTITY, key, issuer=ISSUER, audience=AUD, now=NOW)
    claims = json.loads(unb64(token.split(".")[1]))
    assert TAGS_CLAIM not in claims and SOURCE_IDENTITY_CLAIM not in claims
    assert check(token, key) == []


def test_key_rotation_any_published_key_verifies(rsa_key: SigningKey, ec_key: SigningKey) -> None:
    token = mint_token(GRANT, IDENTITY, rsa_key, issuer=ISSUER, audience=AUD, now=NOW)
    assert check(token, rsa_key, jwks=jwks_of(rsa_key, ec_key)) == []
    assert check(token, rsa_key, jwks=jwks_of(ec_key, rsa_key)) == []


def test_validity_window_edges(rsa_key: SigningKey) -> None:
    token = mint_token(GRANT, IDENTITY, rsa_key, issuer=ISSUER, audience=AUD, now=NOW, lifetime=300)
    assert check(token, rsa_key, now=NOW + 299) == []
    assert check(token, rsa_key, now=NOW + 300) == ["6: token expired 0s ago"]
    # A bridge clock a little ahead of the verifier's is within the default 300 s skew.
    assert check(token, rsa_key, now=NOW - 300) == []
    assert check(token, rsa_key, now=NOW - 301) == ["6: iat is 301s in the future"]


def test_assert_valid_jwt_raises_listing_every_problem(rsa_key: SigningKey) -> None:
    token = sign(rsa_key, good_claims(aud=[AUD], sub="abc"))
    with pytest.raises(ValidationFailed) as exc:
        assert_valid_jwt(token, jwks=jwks_of(rsa_key), issuer=ISSUER, audiences={AUD}, now=NOW)
    msg = str(exc.value)
    assert msg.startswith("token breaks AWS rules:")
    assert "4: aud must be a single string, got list" in msg
    assert "5: sub must be a string of 6..255 characters" in msg
    assert isinstance(exc.value, AssertionError)  # pytest shows it like a failed assert


def test_every_broken_rule_is_reported_at_once(rsa_key: SigningKey) -> None:
    claims = good_claims(
        iss="https://evil.example.com",
        aud="someone-else",
        sub="x",
        iat=float(NOW),
        **{TAGS_CLAIM: {"principal_tags": {"aws:k": ["v"]}}, SOURCE_IDENTITY_CLAIM: "no spaces please"},
    )
    token = sign(rsa_key, claims)
    problems = check_problems(token, rsa_key, jwks=jwks_of(rsa_key))
    assert [p.rule for p in problems] == ["3", "4", "5", "6", "7", "8"]


# --------------------------------------------------------------------------- rule 1: shape and header


def test_rule1_token_too_long(rsa_key: SigningKey) -> None:
    token = sign(rsa_key, good_claims(padding="x" * MAX_TOKEN_LEN))
    assert len(token) > MAX_TOKEN_LEN
    assert check(token, rsa_key) == [f"1: token is {len(token)} characters; AWS allows {MAX_TOKEN_LEN}"]


@pytest.mark.parametrize("token", ["a.b", "onlyonepart", "a.b.c.d", ""])
def test_rule1_not_three_parts(token: str, rsa_key: SigningKey) -> None:
    assert check(token, rsa_key) == ["1: not a compact JWS (three base64url parts)"]


def test_rule1_parts_not_base64url_json(rsa_key: SigningKey) -> None:
    assert check("abc.def.ghi", rsa_key) == ["1: header, payload or signature is not base64url JSON"]


def test_rule1_header_must_be_an_object(rsa_key: SigningKey) -> None:
    token = f"{segment(['RS256'])}.{segment(good_claims())}.{b64(b'sig')}"
    assert check(token, rsa_key) == ["1: header and payload must be JSON objects"]


@pytest.mark.parametrize("alg", ["HS256", "none", "PS256"])
def test_rule1_alg_not_accepted_by_aws(alg: str, rsa_key: SigningKey) -> None:
    token = unsigned({"alg": alg, "kid": rsa_key.kid, "typ": "JWT"}, good_claims(), sig=b"\x00" * 32)
    problems = check(token, rsa_key)
    assert len(problems) == 1
    assert problems[0].startswith(f"1: alg {alg!r} is not one AWS accepts")


def test_rule1_hs256_signed_with_the_public_key_bytes_is_refused(rsa_key: SigningKey) -> None:
    """The classic alg-confusion attack: HMAC keyed with the public key must not verify."""
    pem = rsa_key.key.as_pem(private=False)
    signing_input = f"{segment({'alg': 'HS256', 'kid': rsa_key.kid})}.{segment(good_claims())}"
    token = f"{signing_input}.{b64(hmac.new(pem, signing_input.encode(), hashlib.sha256).digest())}"
    assert check(token, rsa_key) == [
        "1: alg 'HS256' is not one AWS accepts (RS256, RS384, RS512, ES256, ES384, ES512)"
    ]


def test_rule1_crit_header_refused(rsa_key: SigningKey) -> None:
    header = {"alg": "RS256", "kid": rsa_key.kid, "typ": "JWT", "crit": ["exp"], "exp": NOW + 300}
    token = sign_rsa_by_hand(rsa_key.key.private_key, header, good_claims())
    assert check(token, rsa_key) == ["1: crit header is not allowed"]  # the signature itself is fine


def test_rule1_missing_kid(key: SigningKey) -> None:
    token = jwt.encode({"alg": key.alg}, good_claims(), key.key, algorithms=[key.alg])
    assert check(token, key) == ["1: header has no kid"]


def test_rule1_kid_not_in_jwks(rsa_key: SigningKey, other_rsa_key: SigningKey) -> None:
    token = sign(rsa_key, good_claims())
    assert check(token, rsa_key, jwks=jwks_of(other_rsa_key)) == [
        f"1: kid {rsa_key.kid!r} is not in the published JWKS"
    ]


@pytest.mark.parametrize("field", ["use", "alg"])
def test_rule1_published_jwk_lacks_field(field: str, key: SigningKey) -> None:
    jwks = jwks_of(key)
    del jwks["keys"][0][field]
    assert check(sign(key, good_claims()), key, jwks=jwks) == [
        f"1: published JWK {key.kid!r} lacks {field!r}"
    ]


def test_rule1_jwk_for_another_alg(rsa_key: SigningKey) -> None:
    jwks = jwks_of(rsa_key)
    jwks["keys"][0]["alg"] = "RS512"
    assert check(sign(rsa_key, good_claims()), rsa_key, jwks=jwks) == [
        f"1: JWK {rsa_key.kid!r} is for RS512, token uses RS256"
    ]


# --------------------------------------------------------------------------- rule 2: signature


def test_rule2_tampered_payload(key: SigningKey) -> None:
    h, _, s = sign(key, good_claims()).split(".")
    forged = f"{h}.{segment(good_claims(sub='u-someone-else-entirely'))}.{s}"
    assert check(forged, key) == ["2: signature does not verify"]


def test_rule2_valid_token_checked_with_another_keys_jwks_same_kid(
    rsa_key: SigningKey, other_rsa_key: SigningKey
) -> None:
    token = sign(rsa_key, good_claims())
    impostor = copy.deepcopy(jwks_of(other_rsa_key))
    impostor["keys"][0]["kid"] = rsa_key.kid  # same kid, different key material
    assert check(token, rsa_key, jwks=impostor) == ["2: signature does not verify"]


def test_rule2_ec_token_checked_with_another_ec_key(ec_key: SigningKey, keys_root: Path) -> None:
    other = generate_key(keys_root / "ec-other", "ES256")
    jwks = copy.deepcopy(jwks_of(other))
    jwks["keys"][0]["kid"] = ec_key.kid
    assert check(sign(ec_key, good_claims()), ec_key, jwks=jwks) == ["2: signature does not verify"]


def test_rule2_ecdsa_signature_wrong_length(ec_key: SigningKey) -> None:
    h, p, s = sign(ec_key, good_claims()).split(".")
    truncated = f"{h}.{p}.{b64(unb64(s)[:-1])}"
    assert check(truncated, ec_key) == ["2: ECDSA signature has the wrong length"]


def test_rule2_key_type_does_not_match_alg(rsa_key: SigningKey, ec_key: SigningKey) -> None:
    # ES256 header, but the kid names the RSA key.
    token = jwt.encode({"alg": "ES256", "kid": rsa_key.kid}, good_claims(), ec_key.key, algorithms=["ES256"])
    assert check(token, rsa_key) == [
        f"1: JWK {rsa_key.kid!r} is for RS256, token uses ES256",
        "2: key is RSA/None, header says ES256",
    ]


def test_rule2_rsa_key_shorter_than_2048_bits() -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - weak on purpose
    nums = weak.public_key().public_numbers()
    jwk = {
        "kty": "RSA",
        "kid": "weak-1024",
        "alg": "RS256",
        "use": "sig",
        "n": b64(nums.n.to_bytes((nums.n.bit_length() + 7) // 8, "big")),
        "e": b64(nums.e.to_bytes(3, "big")),
    }
    token = sign_rsa_by_hand(weak, {"alg": "RS256", "kid": "weak-1024", "typ": "JWT"}, good_claims())
    problems = validate_jwt(token, jwks={"keys": [jwk]}, issuer=ISSUER, audiences={AUD}, now=NOW)
    assert problems == [Problem("2", "signature", "RSA key is 1024 bits; at least 2048 required")]


# --------------------------------------------------------------------------- rule 3: issuer


def test_rule3_iss_differs_from_configured_issuer(rsa_key: SigningKey) -> None:
    token = sign(rsa_key, good_claims(iss="https://other.example.com"))
    assert check(token, rsa_key) == [
        "3: iss 'https://other.example.com' is not the configured issuer 'https://bridge.example.com' "
        "(byte-exact)"
    ]


def test_rule3_iss_is_byte_exact_trailing_slash(rsa_key: SigningKey) -> None:
    token = sign(rsa_key, good_claims(iss=ISSUER + "/"))
    problems = check(token, rsa_key)
    assert len(problems) == 1 and problems[0].startswith("3: iss 'https://bridge.example.com/' is not")


@pytest.mark.parametrize(
    ("issuer", "text"),
    [
        ("http://bridge.example.com", "3: issuer 'http://bridge.example.com' must use https"),
        (
            "https://bridge.example.com:8443",
            "3: issuer 'https://bridge.example.com:8443' must not carry a port",
        ),
        (
            "https://bridge.example.com:443",
            "3: issuer 'https://bridge.example.com:443' must not carry a port",
        ),
        ("https://bridge.example.com/?tenant=1", "must not carry a query or fragment"),
    ],
)
def test_rule3_issuer_url_shape(issuer: str, text: str, rsa_key: SigningKey) -> None:
    # iss matches the configured issuer exactly; only the URL's shape is wrong.
    token = mint_token(GRANT, IDENTITY, rsa_key, issuer=issuer, audience=AUD, now=NOW)
    problems = check(token, rsa_key, issuer=issuer)
    assert len(problems) == 1
    assert problems[0].startswith("3: ") and text in problems[0]


def test_rule3_discovery_issuer_mismatch(rsa_key: SigningKey) -> None:
    token = sign(rsa_key, good_claims())
    discovery = {"issuer": "https://bridge.example.com/", "jwks_uri": f"{ISSUER}/jwks.json"}
    assert check(token, rsa_key, discovery=discovery) == [
        "3: discovery issuer 'https://bridge.example.com/' differs from iss 'https://bridge.example.com'"
    ]


def test_rule3_discovery_jwks_uri_must_be_https(rsa_key: SigningKey) -> None:
    token = sign(rsa_key, good_claims())
    discovery = {"issuer": ISSUER, "jwks_uri": "http://bridge.example.com/jwks.json"}
    assert check(token, rsa_key, discovery=discovery) == ["3: discovery jwks_uri must be an https URL"]


# --------------------------------------------------------------------------- rule 4: audience


def test_rule4_aud_as_list(rsa_key: SigningKey) -> None:
    token = sign(rsa_key, good_claims(aud=[AUD]))
    assert check(token, rsa_key) == ["4: aud must be a single string, got list"]


def test_rule4_aud_missing(rsa_key: SigningKey) -> None:
    claims = good_claims()
    del claims["aud"]
    assert check(sign(rsa_key, claims), rsa_key) == ["4: aud must be a single string, got NoneType"]


def test_rule4_aud_not_registered(rsa_key: SigningKey) -> None:
    token = sign(rsa_key, good_claims(aud="my-app"))
    assert check(token, rsa_key, audiences={AUD, "other"}) == [
        "4: aud 'my-app' is not a registered client id ['other', 'sts.amazonaws.com']"
    ]


def test_rule4_aud_longer_than_255_even_if_registered(rsa_key: SigningKey) -> None:
    long_aud = "a" * 256
    token = sign(rsa_key, good_claims(aud=long_aud))
    problems = check(token, rsa_key, audiences={long_aud})
    assert len(problems) == 1 and problems[0].startswith("4: aud 'aaaa")
    ok = "a" * 255
    assert check(sign(rsa_key, good_claims(aud=ok)), rsa_key, audiences={ok}) == []


# --------------------------------------------------------------------------- rule 5: subject


@pytest.mark.parametrize("sub", ["abc", "", "x" * 256, 123456789, None])
def test_rule5_sub_invalid(sub: Any, rsa_key: SigningKey) -> None:
    token = sign(rsa_key, good_claims(sub=sub))
    assert check(token, rsa_key) == ["5: sub must be a string of 6..255 characters"]


def test_rule5_sub_bounds_accepted(rsa_key: SigningKey) -> None:
    for sub in ("abcdef", "x" * 255):
        assert check(sign(rsa_key, good_claims(sub=sub)), rsa_key) == []


# --------------------------------------------------------------------------- rule 6: times


@pytest.mark.parametrize(
    ("name", "value", "type_name"),
    [
        ("iat", float(NOW), "float"),
        ("iat", str(NOW), "str"),
        ("exp", float(NOW + 300), "float"),
        ("exp", str(NOW + 300), "str"),
        ("exp", True, "bool"),
        ("exp", None, "NoneType"),
    ],
)
def test_rule6_times_must_be_integers(name: str, value: Any, type_name: str, rsa_key: SigningKey) -> None:
    token = sign(rsa_key, good_claims(**{name: value}))
    assert check(token, rsa_key) == [f"6: {name} must be a JSON integer, got {type_name}"]


def test_rule6_iat_in_future_beyond_skew(rsa_key: SigningKey) -> None:
    token = sign(rsa_key, good_claims(iat=NOW + 301, exp=NOW + 600))
    assert check(token, rsa_key) == ["6: iat is 301s in the future"]
    assert check(token, rsa_key, skew=301) == []
    assert check(token, rsa_key, skew=0) == ["6: iat is 301s in the future"]


def test_rule6_expired(rsa_key: SigningKey) -> None:
    token = sign(rsa_key, good_claims(iat=NOW - 100, exp=NOW - 10))
    assert check(token, rsa_key) == ["6: token expired 10s ago"]


def test_rule6_lifetime_over_an_hour(rsa_key: SigningKey) -> None:
    assert check(sign(rsa_key, good_claims(exp=NOW + 3601)), rsa_key) == [
        "6: lifetime exp-iat is 3601s; at most 3600s"
    ]
    assert check(sign(rsa_key, good_claims(exp=NOW + 3600)), rsa_key) == []


# --------------------------------------------------------------------------- rule 7: session tags


def test_rule7_tags_claim_extra_key(rsa_key: SigningKey) -> None:
    claims = with_tags(
        {"principal_tags": {"Project": ["A"]}, "transitive_tag_keys": [], "session_policy": "x"}
    )
    assert check(sign(rsa_key, claims), rsa_key) == ["7: unexpected key 'session_policy' in the tags claim"]


def test_rule7_tags_claim_must_be_object(rsa_key: SigningKey) -> None:
    assert check(sign(rsa_key, with_tags(["Project"])), rsa_key) == ["7: the tags claim must be an object"]


def test_rule7_principal_tags_must_be_object(rsa_key: SigningKey) -> None:
    claims = with_tags({"principal_tags": [["Project", "A"]], "transitive_tag_keys": []})
    assert check(sign(rsa_key, claims), rsa_key) == ["7: principal_tags must be an object"]


def test_rule7_transitive_keys_must_be_string_array(rsa_key: SigningKey) -> None:
    claims = with_tags({"principal_tags": {"Project": ["A"]}, "transitive_tag_keys": "Project"})
    assert check(sign(rsa_key, claims), rsa_key) == ["7: transitive_tag_keys must be an array of strings"]


@pytest.mark.parametrize("value", ["Automation", ["Automation", "Other"], [], [42]])
def test_rule7_tag_value_not_one_string_array(value: Any, rsa_key: SigningKey) -> None:
    claims = with_tags({"principal_tags": {"Project": value}, "transitive_tag_keys": []})
    assert check(sign(rsa_key, claims), rsa_key) == [
        f"7: tag 'Project' must be an array of exactly one string, got {value!r}"
    ]


def test_rule7_transitive_key_not_in_tags(rsa_key: SigningKey) -> None:
    claims = with_tags({"principal_tags": {"Project": ["A"]}, "transitive_tag_keys": ["Project", "Team"]})
    assert check(sign(rsa_key, claims), rsa_key) == [
        "7: transitive tag key 'Team' is not one of the session tags"
    ]


@pytest.mark.parametrize("key_name", ["aws:Project", "AWS:Project"])
def test_rule7_tag_key_reserved_prefix(key_name: str, rsa_key: SigningKey) -> None:
    claims = with_tags({"principal_tags": {key_name: ["A"]}, "transitive_tag_keys": []})
    assert check(sign(rsa_key, claims), rsa_key) == [
        f"7: tag key {key_name!r} starts with the reserved prefix 'aws:'"
    ]


def test_rule7_tag_keys_differing_only_in_case(rsa_key: SigningKey) -> None:
    claims = with_tags({"principal_tags": {"Project": ["A"], "project": ["B"]}, "transitive_tag_keys": []})
    assert check(sign(rsa_key, claims), rsa_key) == [
        "7: tag keys 'Project' and 'project' differ only in case (AWS keys are case-insensitive)"
    ]


def test_rule7_tag_value_rules(rsa_key: SigningKey) -> None:
    claims = with_tags(
        {
            "principal_tags": {"Dept": ["Finance & Ops"], "Env": ["aws:prod"], "Long": ["v" * 257]},
            "transitive_tag_keys": [],
        }
    )
    assert check(sign(rsa_key, claims), rsa_key) == [
        "7: tag 'Dept': tag value has characters AWS does not allow: '&'",
        "7: tag 'Env': tag value starts with the reserved prefix 'aws:'",
        "7: tag 'Long': tag value is longer than 256 characters",
    ]


def test_rule7_more_than_50_tags(rsa_key: SigningKey) -> None:
    tags = {f"K{i}": ["v"] for i in range(51)}
    claims = with_tags({"principal_tags": tags, "transitive_tag_keys": []})
    assert check(sign(rsa_key, claims), rsa_key) == ["7: 51 session tags; AWS allows at most 50"]
    del tags["K50"]
    assert check(sign(rsa_key, with_tags({"principal_tags": tags})), rsa_key) == []


def test_rule7_unicode_letters_and_spaces_are_allowed(rsa_key: SigningKey) -> None:
    claims = with_tags(
        {
            "principal_tags": {
                "Abteilung Süd": ["Entwicklung München"],
                "部门": ["研发"],
                "path/key:x=y+z@w": ["a.b_c-d"],
            },
            "transitive_tag_keys": ["部门"],
        }
    )
    assert check(sign(rsa_key, claims), rsa_key) == []


# --------------------------------------------------------------------------- rule 8: source identity


@pytest.mark.parametrize("value", ["alice smith", "a", "x" * 65, "aws:admin", "José", "", 42])
def test_rule8_source_identity_invalid(value: Any, rsa_key: SigningKey) -> None:
    token = sign(rsa_key, good_claims(**{SOURCE_IDENTITY_CLAIM: value}))
    assert check(token, rsa_key) == [
        f"8: source identity {value!r} must match [A-Za-z0-9_+=,.@-]{{2,64}}, no 'aws:'"
    ]


@pytest.mark.parametrize("value", ["ab", "x" * 64, "alice@example.com", "a_b+c=d,e.f@g-h"])
def test_rule8_source_identity_valid(value: str, rsa_key: SigningKey) -> None:
    assert check(sign(rsa_key, good_claims(**{SOURCE_IDENTITY_CLAIM: value})), rsa_key) == []


def test_rule8_source_identity_with_trailing_newline_is_refused(rsa_key: SigningKey) -> None:
    token = sign(rsa_key, good_claims(**{SOURCE_IDENTITY_CLAIM: "admin\n"}))
    assert check(token, rsa_key) != []


# --------------------------------------------------------------------------- rule 9: API parameters


@pytest.mark.parametrize(
    ("name", "duration"), [("alice", 3600), ("ab", 900), ("x" * 64, 43200), ("a_b+c=d,e.f@g-h", 1800)]
)
def test_rule9_valid_params(name: str, duration: int) -> None:
    assert validate_assume_params(name, duration) == []


@pytest.mark.parametrize("name", ["alice smith", "x" * 65, "a", "", "josé", "a/b", "a:b"])
def test_rule9_bad_session_name(name: str) -> None:
    assert validate_assume_params(name, 3600) == [
        Problem("9", "RoleSessionName", f"RoleSessionName {name!r} must match [\\w+=,.@-]{{2,64}}")
    ]


@pytest.mark.parametrize(
    ("duration", "max_duration"), [(899, 43200), (43201, 43200), (3601, 3600), (0, 3600)]
)
def test_rule9_bad_duration(duration: int, max_duration: int) -> None:
    problems = validate_assume_params("alice", duration, max_duration)
    assert problems == [Problem("9", "DurationSeconds", f"DurationSeconds {duration} must be 900..{max_duration}")]
    assert texts(problems) == [f"9: DurationSeconds {duration} must be 900..{max_duration}"]


def test_rule9_both_params_bad_lists_both() -> None:
    problems = validate_assume_params("has space", 899)
    assert [(p.rule, p.path) for p in problems] == [("9", "RoleSessionName"), ("9", "DurationSeconds")]
    assert all(str(p).startswith("9: ") for p in problems)


def test_rule9_session_name_with_trailing_newline_is_refused() -> None:
    assert validate_assume_params("alice\n", 3600) != []


# --------------------------------------------------------------------------- robustness


@pytest.mark.parametrize("alg", [["RS256"], {"RS256": 1}])
def test_rule1_non_string_alg_is_reported_not_raised(alg: Any, rsa_key: SigningKey) -> None:
    token = unsigned({"alg": alg, "kid": rsa_key.kid}, good_claims(), sig=b"x")
    problems = check(token, rsa_key)
    assert any(p.startswith("1: alg ") for p in problems)


# --------------------------------------------------------------------------- problems are data


def test_problem_is_frozen_data_whose_text_is_rule_colon_message() -> None:
    p = Problem("9", "DurationSeconds", "DurationSeconds 1 must be 900..3600")
    assert (p.rule, p.path, p.message) == ("9", "DurationSeconds", "DurationSeconds 1 must be 900..3600")
    assert str(p) == "9: DurationSeconds 1 must be 900..3600"
    assert p == Problem("9", "DurationSeconds", "DurationSeconds 1 must be 900..3600") and hash(p) == hash(
        Problem("9", "DurationSeconds", "DurationSeconds 1 must be 900..3600"))
    assert p != str(p)  # callers use the fields, never the text
    with pytest.raises(AttributeError):
        p.rule = "1"  # type: ignore[misc]


def test_problem_fields_say_which_rule_and_where(rsa_key: SigningKey) -> None:
    cases: list[tuple[str, dict[str, Any], tuple[str, str]]] = [
        (sign(rsa_key, good_claims(iss="https://other.example.com")), {}, ("3", "claims.iss")),
        (mint_token(GRANT, IDENTITY, rsa_key, issuer="http://bridge.example.com", audience=AUD, now=NOW),
         {"issuer": "http://bridge.example.com"}, ("3", "issuer")),
        (sign(rsa_key, good_claims(aud="someone-else")), {}, ("4", "claims.aud")),
        (sign(rsa_key, good_claims(sub="x")), {}, ("5", "claims.sub")),
        (sign(rsa_key, good_claims(iat=float(NOW))), {}, ("6", "claims.iat")),
        (sign(rsa_key, good_claims(exp=NOW - 10)), {}, ("6", "claims.exp")),
        (sign(rsa_key, with_tags({"principal_tags": {"Dept": "Finance"}})), {},
         ("7", f"claims.{TAGS_CLAIM}.principal_tags.Dept")),
        (sign(rsa_key, with_tags({"principal_tags": {"aws:k": ["v"]}})), {}, ("7", f"claims.{TAGS_CLAIM}")),
        (sign(rsa_key, good_claims(**{SOURCE_IDENTITY_CLAIM: "no spaces"})), {},
         ("8", f"claims.{SOURCE_IDENTITY_CLAIM}")),
        (jwt.encode({"alg": "RS256"}, good_claims(), rsa_key.key, algorithms=["RS256"]), {}, ("1", "header.kid")),
        (unsigned({"alg": "none", "kid": rsa_key.kid}, good_claims()), {}, ("1", "header.alg")),
        ("a.b", {}, ("1", "token")),
    ]
    for token, kw, expected in cases:
        problems = check_problems(token, rsa_key, **kw)
        assert [(p.rule, p.path) for p in problems] == [expected], (expected, problems)
        assert str(problems[0]) == f"{problems[0].rule}: {problems[0].message}"


def test_problem_paths_for_the_header_key_and_signature(rsa_key: SigningKey) -> None:
    token = sign(rsa_key, good_claims())
    h, _, s = token.split(".")
    forged = f"{h}.{segment(good_claims(sub='u-someone-else-entirely'))}.{s}"
    assert check_problems(forged, rsa_key) == [Problem("2", "signature", "signature does not verify")]
    jwks = jwks_of(rsa_key)
    del jwks["keys"][0]["use"]
    assert check_problems(token, rsa_key, jwks=jwks) == [
        Problem("1", f"jwks.{rsa_key.kid}", f"published JWK {rsa_key.kid!r} lacks 'use'")]
    crit = sign_rsa_by_hand(rsa_key.key.private_key, {"alg": "RS256", "kid": rsa_key.kid, "crit": ["exp"]},
                            good_claims())
    assert check_problems(crit, rsa_key) == [Problem("1", "header.crit", "crit header is not allowed")]
