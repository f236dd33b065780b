"""Pass-through artifacts against AWS's rules, at sign-in (docs/aws-rules.md §1.10, §2.2–§2.4).

An ``aws_passthrough`` connector hands the upstream IdP's own SAMLResponse or ID token to STS, and
AWS judges it against the *upstream IdP's* registration in IAM. So the sign-in runs the strict
validator on it (``check_saml`` / ``check_oidc``) and everything said here — why a role is not
offered, what an STS refusal means (``upstream_sts_error``) — is worded for the upstream IdP's
configuration (its AWS app's Recipient and Audience, its clock, its metadata in IAM), never for the
bridge's own token or metadata. Nothing here logs or returns the artifact itself.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from bridge.aws.problems import Problem
from bridge.aws.validate_saml import IdpMetadata, redeem_deadline, validate_saml_response
from bridge.domain.errors import StsError, StsUnavailable

SIGNIN = "https://signin.aws.amazon.com/saml"

# §1.10 rule → what to change at the upstream IdP.
SAML_ADVICE = {
    "1": "The identity provider's response cannot be read by AWS.",
    "2": "The identity provider must answer with Status Success and one plain Assertion.",
    "3": ("AWS checks the signature with the metadata registered in IAM for the provider: the identity "
          "provider must sign the Assertion with RSA-SHA256, and IAM must hold its current metadata."),
    "4": "The Issuer must be the identity provider's entity id, as in the metadata registered in IAM.",
    "5": (f"In the identity provider's AWS app, Recipient and Destination must be AWS's {SIGNIN}, not the "
          "bridge's address (Okta: untick \"Use this for Recipient URL and Destination URL\")."),
    "6": "The identity provider's AWS app must send a NameID in a format AWS supports (persistent, e-mail, …).",
    "7": ("The identity provider's AWS app must send Audience urn:amazon:webservices, and its clock must be "
          "right (NTP)."),
    "8": ("AWS takes an assertion only within 5 minutes of its IssueInstant: check the identity provider's "
          "clock (NTP), then sign in again and pick the role right away."),
    "9": ("AWS refuses the whole assertion when any Role value is not '<role arn>,<saml-provider arn>' with both "
          "in one account: the identity provider's administrator must correct the Role attribute of the AWS app."),
    "10": ("The identity provider must send the attribute https://aws.amazon.com/SAML/Attributes/RoleSessionName "
           "(one value, 2–64 characters of A–Z a–z 0–9 _+=,.@-)."),
    "11": "The SessionDuration attribute must be one number of seconds, 900–43200.",
    "12": "The identity provider's PrincipalTag attributes break AWS's session-tag rules.",
    "13": "The SourceIdentity attribute must be one value of 2–64 characters of A–Z a–z 0–9 _+=,.@-.",
}


@dataclass(frozen=True)
class UpstreamCheck:
    """What AWS would say of one upstream artifact, judged at sign-in.

    ``until``: AWS takes the artifact until then (epoch seconds; SAML: IssueInstant + 5 minutes or an
    earlier NotOnOrAfter; OIDC: the token's ``exp``). ``problems``: why AWS would refuse it for every
    role (empty: it would take it). ``warnings``: what the bridge cannot see but AWS will check."""

    kind: str
    until: int
    problems: tuple[Problem, ...] = ()
    warnings: tuple[str, ...] = ()

    def reasons(self) -> list[tuple[str, str]]:
        """(code, what the user reads) per problem: ``aws_rule_<n>`` and the fix at the IdP."""
        if self.kind == "saml":
            return [(f"aws_rule_{p.rule}", f"{p.message}. {SAML_ADVICE.get(p.rule, '')}".strip())
                    for p in self.problems]
        return [(f"aws_rule_{p.rule}", p.message) for p in self.problems]


def check_saml(b64: str, *, entity_id: str, certs_pem: tuple[bytes, ...], partition: str, now: int,
               encryption_allowed: bool = False) -> UpstreamCheck:
    """The strict §1.10 validator on the upstream response, against the IdP metadata the connector
    trusts (which must be what IAM holds). A bad Role value (rule 9) spoils the whole assertion, as
    for AWS; ``mapping.passthrough_grants`` says which value is bad."""
    problems = validate_saml_response(b64, metadata=IdpMetadata(entity_id, certs_pem), now=now, partition=partition,
                                      encryption_allowed=encryption_allowed)
    until = redeem_deadline(b64)
    return UpstreamCheck("saml", now if until is None else until, tuple(problems))


def pem(cert: str) -> bytes:
    """A certificate from IdP settings (bare base64 or PEM) as PEM."""
    if "BEGIN CERTIFICATE" in cert:
        return cert.encode()
    body = "".join(cert.split())
    return b"-----BEGIN CERTIFICATE-----\n" + body.encode() + b"\n-----END CERTIFICATE-----\n"


def token_claims(id_token: str) -> dict[str, Any]:
    """The payload of a JWT already verified at sign-in ({} when unreadable)."""
    try:
        payload = id_token.split(".")[1]
        doc = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def issuer_problems(issuer: str, jwks_uri: str | None) -> list[str]:
    """What AWS refuses in an upstream OIDC issuer (§2.2, §2.3): not https, a port, query or fragment;
    a JWKS it cannot fetch over https."""
    out = []
    u = urlsplit(issuer)
    if u.scheme != "https" or u.port is not None or u.query or u.fragment:
        out.append(f"the issuer {issuer} must be https with no port, query or fragment for AWS to register "
                   "it as an IAM OIDC provider")
    if jwks_uri is not None and urlsplit(jwks_uri).scheme != "https":
        out.append(f"the IdP's jwks_uri {jwks_uri} must be https and reachable from the internet: AWS fetches it")
    return out


def check_oidc(id_token: str, *, issuer: str, client_id: str, jwks_uri: str | None, now: int) -> UpstreamCheck:
    """§2.2–§2.4 for an upstream ID token verified at sign-in: its ``aud`` must be the client id
    registered in IAM and it must be unexpired (``until`` = its ``exp``); the issuer's shape and JWKS
    are warnings (AWS checks them against IAM; a test IdP on http cannot pass them)."""
    claims = token_claims(id_token)
    exp = claims.get("exp")
    until = int(exp) if isinstance(exp, int) else now
    problems = []
    aud = claims.get("aud")
    if aud != client_id:
        problems.append(Problem("4", "claims.aud", f"the ID token's aud {aud!r} must be the one client id "
                                                   f"{client_id!r} registered in IAM"))
    if until <= now:
        problems.append(Problem("6", "claims.exp", "the identity provider's ID token has expired"))
    return UpstreamCheck("oidc", until, tuple(problems), tuple(issuer_problems(issuer, jwks_uri)))


# STS refusals of an upstream artifact: (message, hint) about the upstream IdP, by AWS error code.
_UPSTREAM_STS: dict[str, dict[str, tuple[str, str]]] = {
    "saml": {
        "InvalidIdentityToken": (
            "AWS rejected your identity provider's SAML response.",
            "The IAM SAML provider named in the identity provider's Role attribute must hold that identity "
            f"provider's current metadata (its signing certificate); its AWS app must send Recipient {SIGNIN} "
            "and Audience urn:amazon:webservices; its clock must be right. Give the request id to your "
            "administrator."),
        "ExpiredTokenException": (
            "AWS says your identity provider's SAML response has expired.",
            "AWS takes it only within 5 minutes of when the identity provider issued it: check the identity "
            "provider's clock (NTP), then sign in again and pick the role right away."),
        "AccessDenied": (
            "AWS denied the role assumption.",
            "The role's trust policy must allow sts:AssumeRoleWithSAML for the IAM SAML provider of your "
            f"identity provider (the one in its Role attribute), with SAML:aud {SIGNIN}."),
        "ValidationError": (
            "AWS refused the request parameters.",
            "The duration may exceed the role's MaxSessionDuration or the identity provider's SessionDuration "
            "attribute: pick a shorter one."),
    },
    "oidc": {
        "InvalidIdentityToken": (
            "AWS rejected your identity provider's ID token.",
            "The IAM OIDC provider must have your identity provider's issuer as its URL (https, no port), the "
            "connector's client id in its audience list, and AWS must reach the issuer's JWKS over https. "
            "Give the request id to your administrator."),
        "ExpiredTokenException": (
            "AWS says your identity provider's ID token has expired.",
            "Sign in again, then pick the role right away; if it keeps happening, check the identity "
            "provider's clock (NTP)."),
        "AccessDenied": (
            "AWS denied the role assumption.",
            "The role's trust policy must allow sts:AssumeRoleWithWebIdentity for your identity provider's "
            "IAM OIDC provider, with <issuer host>:aud equal to the connector's client id."),
        "IDPRejectedClaim": (
            "AWS rejected a claim in your identity provider's ID token.",
            "Give the request id to your administrator (the identity provider's claims, not the bridge's)."),
    },
}


def upstream_sts_error(e: StsError, kind: str) -> StsError:
    """``e`` (an STS refusal of a pass-through artifact) with a message and hint about the upstream IdP."""
    if isinstance(e, StsUnavailable):
        return e
    known = _UPSTREAM_STS.get(kind, {}).get(e.code.removeprefix("sts_"))
    if known is None:
        return e
    return StsError(e.detail, code=e.code, status=e.status, message=known[0], hint=known[1])
