"""STS adapter (boto3): unsigned AssumeRoleWithWebIdentity/SAML, signed AssumeRole, errors mapped to BridgeErrors.

The bridge holds no AWS keys of its own: web-identity and SAML assumption are unsigned calls. Role
chaining (docs/aws-rules.md §7) signs sts:AssumeRole with the credentials of the hub just assumed; they
are given per call (a context variable read by the client's signing hook), so one client serves every
hop — building a signed client per call would cost more than the STS call itself.
Standard retry mode handles throttling and 5xx with backoff; what is left after the
retries becomes a StsError whose message says what to fix.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import boto3
from botocore import UNSIGNED
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import ReadOnlyCredentials
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ParamValidationError,
    ReadTimeoutError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)
from botocore.parsers import ResponseParserError

from bridge.domain.errors import StsBusy, StsError, StsUnavailable
from bridge.domain.identity import Credentials

# AWS error code → (status, message, hint). Texts are ours; AWS's own message goes in detail.
_ERRORS: dict[str, tuple[int, str, str]] = {
    "AccessDenied": (403, "AWS denied the role assumption.",
                     "The role's trust policy must allow this bridge's identity provider "
                     "(sts:AssumeRoleWithWebIdentity or sts:AssumeRoleWithSAML, plus sts:TagSession "
                     "and sts:SetSourceIdentity when tags or a source identity are sent)."),
    "InvalidIdentityToken": (400, "AWS rejected the bridge's identity token or SAML response.",
                             "OIDC: the IAM OIDC provider URL must equal the bridge's issuer, its audience "
                             "list hold the bridge's audience, and the JWKS be reachable. SAML: the IAM "
                             "SAML provider must hold the bridge's current /idp/metadata.xml."),
    "ExpiredTokenException": (400, "AWS says the bridge's token expired.",
                              "Check the bridge host's clock (NTP); then try again."),
    "ValidationError": (400, "AWS refused the request parameters.",
                        "The requested duration may exceed the role's MaxSessionDuration: pick a "
                        "shorter one, or raise the role's maximum in IAM."),
    "IDPRejectedClaim": (403, "AWS rejected a claim in the bridge's token.", "Give the request id to "
                         "your administrator."),
    "PackedPolicyTooLarge": (400, "The session tags are too large for AWS.",
                             "Ask your administrator to send fewer or shorter session tags."),
    "RegionDisabledException": (403, "STS is not enabled in the configured region.",
                                "Enable STS in that region or configure another region."),
    "MalformedPolicyDocument": (400, "AWS refused the session policy.",
                                "Ask your administrator to check the session policy of this role in the rules."),
}
# The credentials sts:AssumeRole is signed with (a hub's), for the call under way in this thread only.
_SIGN_WITH: ContextVar[ReadOnlyCredentials | None] = ContextVar("bridge_sts_sign_with", default=None)


class UnsignedAssumeRole(RuntimeError):
    """sts:AssumeRole without credentials to sign it: a bug, never sent."""
_UNAVAILABLE = {"Throttling", "ThrottlingException", "RequestLimitExceeded", "IDPCommunicationError",
                "ServiceUnavailable", "InternalFailure", "InternalError"}


class Bulkhead:
    """At most ``limit`` STS calls at once in this process; one more is refused at once (StsBusy).

    gunicorn's threads are shared by every request of a worker: without a cap, a silent STS would
    hold them all and /healthz, /readyz, the JWKS and sign-in would wait behind it. With the cap
    below the thread count, the other threads stay free, and the excess gets a fast 503."""

    def __init__(self, limit: int, on_change: Callable[[int], None] | None = None) -> None:
        self.limit = limit
        self.in_flight = 0
        self.on_change = on_change  # told +1 / -1 (the in-flight gauge)
        self._lock = threading.Lock()

    @contextmanager
    def slot(self) -> Iterator[None]:
        with self._lock:
            if self.in_flight >= self.limit:
                raise StsBusy(f"{self.in_flight} STS call(s) in flight, aws.sts_max_concurrency is {self.limit}")
            self.in_flight += 1
        if self.on_change:
            self.on_change(1)
        try:
            yield
        finally:
            with self._lock:
                self.in_flight -= 1
            if self.on_change:
                self.on_change(-1)


class StsGateway:
    """One boto3 STS client per app (thread-safe), built in ``create_app``."""

    def __init__(self, *, region: str, endpoint_url: str | None = None, timeout: float = 5.0,
                 max_attempts: int = 3, on_call: Callable[[str, float, str | None], None] | None = None,
                 max_concurrency: int | None = None, on_in_flight: Callable[[int], None] | None = None) -> None:
        """``on_call(operation, seconds, error code or None)`` is told of every call (metrics).

        ``timeout`` bounds each attempt (connect and read); with ``max_attempts`` that bounds a
        slow STS at about ``timeout × max_attempts`` plus backoff before the user sees a 503.
        ``max_concurrency``: calls in flight at once in this process (None = no cap); beyond it,
        StsBusy (503 ``sts_busy``, reported to ``on_call`` as ``busy``) without waiting.
        """
        self.region = region
        self.endpoint_url = endpoint_url
        self.on_call = on_call
        self.bulkhead = Bulkhead(max_concurrency, on_in_flight) if max_concurrency else None
        config = Config(signature_version=UNSIGNED, connect_timeout=timeout, read_timeout=timeout,
                        retries={"mode": "standard", "total_max_attempts": max_attempts})
        self._client: Any = boto3.session.Session().client(
            "sts", region_name=region, endpoint_url=endpoint_url, config=config)
        # Each attempt (retries too) of AssumeRole is signed with the hub's credentials of this call.
        self._client.meta.events.register("request-created.sts.AssumeRole", self._sign_assume_role,
                                          unique_id="bridge-sign-assume-role")

    def _sign_assume_role(self, request: AWSRequest, **_: Any) -> None:
        creds = _SIGN_WITH.get()
        if creds is None:
            raise UnsignedAssumeRole("sts:AssumeRole needs the previous hop's credentials")
        SigV4Auth(creds, "sts", self.region).add_auth(request)

    def assume_role_with_web_identity(self, *, role_arn: str, session_name: str, token: str,
                                      duration: int, policy: str | None = None,
                                      policy_arns: tuple[str, ...] = ()) -> Credentials:
        """Redeem a JWT for credentials; raises StsError/StsUnavailable."""
        r = self._call("assume_role_with_web_identity", RoleArn=role_arn, RoleSessionName=session_name,
                       WebIdentityToken=token, DurationSeconds=duration, **_policies(policy, policy_arns))
        return self._credentials(r, role_arn, session_name)

    def assume_role(self, source: Credentials, *, role_arn: str, session_name: str, duration: int,
                    external_id: str | None = None, source_identity: str | None = None,
                    tags: Mapping[str, str] | None = None, policy: str | None = None,
                    policy_arns: tuple[str, ...] = ()) -> Credentials:
        """sts:AssumeRole into ``role_arn``, signed with ``source`` (the hub's credentials: role chaining).
        Transitive tags of ``source``'s session carry over by themselves; ``tags`` are the others."""
        params: dict[str, Any] = {"RoleArn": role_arn, "RoleSessionName": session_name, "DurationSeconds": duration,
                                  **_policies(policy, policy_arns)}
        if external_id is not None:
            params["ExternalId"] = external_id
        if source_identity is not None:
            params["SourceIdentity"] = source_identity
        if tags:
            params["Tags"] = [{"Key": k, "Value": v} for k, v in tags.items()]
        reset = _SIGN_WITH.set(ReadOnlyCredentials(source.access_key_id, source.secret_access_key,
                                                   source.session_token))
        try:
            r = self._call("assume_role", **params)
        finally:
            _SIGN_WITH.reset(reset)
        return self._credentials(r, role_arn, session_name)

    def assume_role_with_saml(self, *, role_arn: str, principal_arn: str, saml_response: str,
                              duration: int, policy: str | None = None,
                              policy_arns: tuple[str, ...] = ()) -> Credentials:
        """Redeem a base64 SAMLResponse for credentials; the session name comes from the assertion."""
        r = self._call("assume_role_with_saml", RoleArn=role_arn, PrincipalArn=principal_arn,
                       SAMLAssertion=saml_response, DurationSeconds=duration, **_policies(policy, policy_arns))
        try:
            session_name = str(r["AssumedRoleUser"]["Arn"]).rsplit("/", 1)[-1]
        except (KeyError, TypeError) as e:
            raise _bad_response(f"answer without {e}") from None
        return self._credentials(r, role_arn, session_name)

    def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        started = time.monotonic()
        try:
            if self.bulkhead is None:
                r = self._call_once(operation, **params)
            else:
                with self.bulkhead.slot():
                    r = self._call_once(operation, **params)
        except StsError as e:
            if self.on_call:
                self.on_call(operation, time.monotonic() - started, e.code.removeprefix("sts_"))
            raise
        if self.on_call:
            self.on_call(operation, time.monotonic() - started, None)
        return r

    def _call_once(self, operation: str, **params: Any) -> dict[str, Any]:
        try:
            r: dict[str, Any] = getattr(self._client, operation)(**params)
            return r
        except ClientError as e:
            raise _map_client_error(e) from None
        except ParamValidationError as e:
            raise StsError(str(e), code="sts_invalid_parameters", status=400,
                           message="The request to AWS had invalid parameters.") from None
        except BotoConnectionError as e:
            raise StsUnavailable(f"{type(e).__name__}: {e}") from None
        except ConnectionClosedError:
            # STS accepted the connection, then dropped it without an answer (every attempt).
            raise StsUnavailable("STS closed the connection without answering") from None
        except ReadTimeoutError:
            # STS accepted the connection but did not answer within sts_timeout (every attempt).
            raise StsUnavailable("STS did not answer in time", code="sts_timeout",
                                 message="AWS STS did not answer in time.") from None
        except (BotoCoreError, ResponseParserError) as e:
            # ResponseParserError (an answer that is not STS XML: a proxy's or moto's HTML page) is not a
            # BotoCoreError; both are a 502 the user reads, audited like every other refusal.
            raise _bad_response(type(e).__name__) from None
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as e:
            # botocore's query parser on well-formed XML that is not an STS answer (an HTML page with
            # a 200) fails with plain KeyErrors and the like: the same 502, never a 500.
            raise _bad_response(f"unparsable answer ({type(e).__name__})") from None

    def _credentials(self, r: dict[str, Any], role_arn: str, session_name: str) -> Credentials:
        try:
            return self._read_credentials(r, role_arn, session_name)
        except (KeyError, TypeError, AttributeError) as e:  # parsed, but not an AssumeRole* answer
            raise _bad_response(f"answer without {e}") from None

    def _read_credentials(self, r: dict[str, Any], role_arn: str, session_name: str) -> Credentials:
        c = r["Credentials"]
        return Credentials(
            access_key_id=c["AccessKeyId"], secret_access_key=c["SecretAccessKey"],
            session_token=c["SessionToken"], expiration=c["Expiration"],
            assumed_role_arn=r["AssumedRoleUser"]["Arn"], role_arn=role_arn, session_name=session_name,
            region=self.region, sts_request_id=str((r.get("ResponseMetadata") or {}).get("RequestId") or ""))


def _policies(policy: str | None, policy_arns: tuple[str, ...]) -> dict[str, Any]:
    """The session-policy parameters of any AssumeRole* call (docs/aws-rules.md §7.3)."""
    out: dict[str, Any] = {}
    if policy is not None:
        out["Policy"] = policy
    if policy_arns:
        out["PolicyArns"] = [{"arn": a} for a in policy_arns]
    return out


def _bad_response(detail: str) -> StsError:
    return StsError(detail[:200], code="sts_bad_response", status=502,
                    message="AWS STS answered with something the bridge could not read.",
                    hint="Try again in a minute. If it keeps happening, check aws.sts_endpoint_url (and any proxy "
                         "in front of STS) and give the request id to your administrator.")


def _map_client_error(e: ClientError) -> StsError:
    err = e.response.get("Error", {})
    code = str(err.get("Code", "Unknown"))
    aws_message = str(err.get("Message", ""))[:500]
    if code in _UNAVAILABLE:
        return StsUnavailable(f"{code}: {aws_message}", code=f"sts_{code}")
    status, message, hint = _ERRORS.get(code, (502, f"AWS STS returned {code}.",
                                              "Give the request id to your administrator."))
    err = StsError(f"{code}: {aws_message}", code=f"sts_{code}", status=status, message=message, hint=hint)
    err.sts_request_id = str(e.response.get("ResponseMetadata", {}).get("RequestId") or "")[:128]
    return err
