"""Upstream SAML 2.0 connector: the bridge as a service provider (python3-saml, strict mode).

python3-saml does the XML work (schema, signature references, XSW defences, decryption,
deprecated-algorithm refusal, DOCTYPE refusal via defusedxml). On top, this adapter enforces
what python3-saml leaves loose (it compares Destination/Recipient by prefix, skips a missing
Audience, and allows 300 s of clock drift): exact Destination and Recipient, a required
Audience, our own clock skew, InResponseTo of a request we made, and a replay cache of
assertion IDs (the ``replay_guard`` callable, backed by Redis in the app).
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from lxml import etree
from onelogin.saml2.auth import OneLogin_Saml2_Auth
from onelogin.saml2.constants import OneLogin_Saml2_Constants as C
from onelogin.saml2.idp_metadata_parser import OneLogin_Saml2_IdPMetadataParser
from onelogin.saml2.response import OneLogin_Saml2_Response
from onelogin.saml2.settings import OneLogin_Saml2_Settings
from onelogin.saml2.utils import OneLogin_Saml2_Utils
from onelogin.saml2.xml_utils import OneLogin_Saml2_XML

from bridge.domain.errors import IdpDenied, LoginError, UpstreamUnavailable
from bridge.domain.identity import Identity
from bridge.domain.partitions import is_aws_saml_audience, is_aws_signin_saml_url
from bridge.domain.stepup import StepUpPolicy
from bridge.telemetry.logs import event
from bridge.upstream.base import LoginStart, PendingLogin, SamlTrust
from bridge.upstream.saml_attributes import attribute_warnings, first_present, name_id_warnings, subject_from
from bridge.upstream.saml_refusals import check_of, refused, unsolicited
from bridge.upstream.saml_settings import SamlConnectorSettings
from bridge.upstream.saml_stepup import authn_instant, security_for_step_up

MAX_RESPONSE_B64 = 1_400_000  # ~1 MB of XML; Flask also caps the request body at 1 MB
ENTRA_AMR = "http://schemas.microsoft.com/claims/authnmethodsreferences"
ReplayGuard = Callable[[str, int], bool]


class SamlConnector:
    """One upstream SAML IdP."""

    type = "saml"

    def __init__(self, cfg: SamlConnectorSettings, *, base_url: str, resolve: Callable[[Path], Path],
                 replay_guard: ReplayGuard, http: requests.Session | None = None,
                 clock: Callable[[], float] = time.time, on_stale: Callable[[str], None] | None = None) -> None:
        self.cfg = cfg
        self.policy = cfg.policy()
        self.on_stale = on_stale
        self.id = cfg.id
        self.name = cfg.name or cfg.id
        self.allows_unsolicited = cfg.insecure_allow_idp_initiated
        self.acs_url = f"{base_url}/callback/{cfg.id}"
        self.sp_entity_id = cfg.sp_entity_id or f"{base_url}/sp/{cfg.id}/metadata.xml"
        self.replay_guard = replay_guard
        self.http = http or requests.Session()
        self.clock = clock
        self.resolve = resolve
        self.sp_key = resolve(cfg.sp_key_file).read_text() if cfg.sp_key_file else ""
        self.sp_cert = resolve(cfg.sp_cert_file).read_text() if cfg.sp_cert_file else ""
        self._lock = threading.Lock()
        self._idp: dict[str, Any] | None = None
        self._idp_at = 0.0
        try:
            self.idp_settings()  # fetch at startup; a failure is retried on use
        except UpstreamUnavailable as e:
            event("saml_metadata_unavailable", connector=self.id, detail=e.detail)

    # -- IdP metadata -------------------------------------------------------------------
    def _load_idp(self) -> dict[str, Any]:
        cfg = self.cfg
        if cfg.metadata_url or cfg.metadata_file:
            if cfg.metadata_url:
                try:
                    r = self.http.get(cfg.metadata_url, timeout=cfg.http_timeout)
                    r.raise_for_status()
                    xml = r.text
                except requests.RequestException as e:
                    raise UpstreamUnavailable(f"{self.id}: metadata {cfg.metadata_url}: {type(e).__name__}") from None
            else:
                assert cfg.metadata_file is not None
                xml = self.resolve(cfg.metadata_file).read_text(encoding="utf-8")
            try:
                parsed = OneLogin_Saml2_IdPMetadataParser.parse(xml, entity_id=cfg.idp_entity_id)
            except Exception as e:  # noqa: BLE001 - library raises many types for bad metadata
                raise UpstreamUnavailable(f"{self.id}: metadata unusable ({type(e).__name__})") from None
            idp: dict[str, Any] = parsed.get("idp") or {}
            if not idp.get("entityId") or not idp.get("singleSignOnService", {}).get("url"):
                raise UpstreamUnavailable(f"{self.id}: metadata lacks an entity id or an HTTP-Redirect SSO URL")
            if not (idp.get("x509cert") or idp.get("x509certMulti")):
                raise UpstreamUnavailable(f"{self.id}: metadata has no signing certificate")
            return idp
        certs = [self.resolve(p).read_text() for p in cfg.idp_cert_files]
        return {"entityId": cfg.idp_entity_id,
                "singleSignOnService": {"url": cfg.sso_url, "binding": C.BINDING_HTTP_REDIRECT},
                "x509certMulti": {"signing": certs}}

    def idp_settings(self) -> dict[str, Any]:
        """The IdP's settings, refreshed every ``metadata_refresh`` s; the last good copy survives failures."""
        with self._lock:
            if self._idp is not None and self.clock() - self._idp_at < self.cfg.metadata_refresh:
                return self._idp
            try:
                idp = self._load_idp()
            except UpstreamUnavailable as e:
                if self._idp is not None:
                    self._idp_at = self.clock() - self.cfg.metadata_refresh + 60  # retry in a minute
                    event("upstream_stale", logging.WARNING, connector=self.id, document="saml_metadata",
                          detail=e.detail[:200])
                    if self.on_stale:
                        self.on_stale("saml_metadata")
                    return self._idp
                raise
            self._idp, self._idp_at = idp, self.clock()
            return idp

    def step_up_policy(self) -> StepUpPolicy:
        """What a step-up's answer must show (``StepUp``): an AuthnContextClassRef (or Entra amr) of
        ``mfa_authn_contexts``, and an AuthnInstant within ``step_up.max_age``."""
        accepted = self.cfg.mfa_authn_contexts
        return self.cfg.step_up.policy(accepted_amr=accepted, accepted_acr=accepted, clock_skew=self.cfg.clock_skew)

    def passthrough_trust(self) -> SamlTrust:
        """What AWS judges this IdP's response against: the IdP metadata the connector trusts."""
        idp = self.idp_settings()
        certs = list((idp.get("x509certMulti") or {}).get("signing") or [])
        if idp.get("x509cert"):
            certs.append(idp["x509cert"])
        return SamlTrust(entity_id=str(idp.get("entityId") or ""), certs=tuple(certs),
                         encryption_allowed=self.cfg.want_assertions_encrypted)

    def settings(self, *, step_up: bool = False) -> OneLogin_Saml2_Settings:
        response_only = self.cfg.insecure_allow_response_only_signing
        data: dict[str, Any] = {
            # Passthrough responses are addressed to AWS (Destination/Recipient), which python3-saml's
            # strict mode would refuse; signatures are still verified and _strict_checks covers the rest.
            "strict": not self.cfg.aws_passthrough, "debug": False,
            "sp": {"entityId": self.sp_entity_id,
                   "assertionConsumerService": {"url": self.acs_url, "binding": C.BINDING_HTTP_POST},
                   "NameIDFormat": self.cfg.requested_name_id_format(), "x509cert": self.sp_cert,
                   "privateKey": self.sp_key},
            "idp": self.idp_settings(),
            "security": {"authnRequestsSigned": self.cfg.sign_authn_requests,
                         "wantAssertionsSigned": not response_only, "wantMessagesSigned": response_only,
                         "wantAssertionsEncrypted": self.cfg.want_assertions_encrypted,
                         "rejectDeprecatedAlgorithm": True, "wantNameId": True, "requestedAuthnContext": False,
                         "wantAttributeStatement": False, "rejectUnsolicitedResponsesWithInResponseTo": True,
                         "signatureAlgorithm": C.RSA_SHA256, "digestAlgorithm": C.SHA256,
                         "allowRepeatAttributeName": True},
        }
        if step_up:  # RequestedAuthnContext of a step-up request (bridge/upstream/saml_stepup.py)
            data["security"] = security_for_step_up(self.cfg, data["security"])
        return OneLogin_Saml2_Settings(data, sp_validation_only=False)

    def sp_metadata(self) -> bytes:
        """Our SP metadata (entity id, ACS, certificates) to register at the IdP. No ``validUntil`` unless
        ``sp_metadata_valid_days`` asks for one (python3-saml's default, now + 2 days, makes an IdP that
        enforces it stop trusting the bridge two days after the import)."""
        days = self.cfg.sp_metadata_valid_days
        settings = OneLogin_Saml2_Settings(
            {"strict": True, "sp": {"entityId": self.sp_entity_id,
                                    "assertionConsumerService": {"url": self.acs_url, "binding": C.BINDING_HTTP_POST},
                                    "NameIDFormat": self.cfg.requested_name_id_format(), "x509cert": self.sp_cert,
                                    "privateKey": self.sp_key},
             "security": {"authnRequestsSigned": self.cfg.sign_authn_requests, "wantAssertionsSigned": True,
                          "wantAssertionsEncrypted": self.cfg.want_assertions_encrypted,
                          "metadataValidUntil": int(self.clock()) + days * 86400 if days else None}},
            sp_validation_only=True)
        md = settings.get_sp_metadata()
        xml = md if isinstance(md, bytes) else str(md).encode()
        if days:
            return xml
        root = etree.fromstring(xml)
        root.attrib.pop("validUntil", None)
        return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))

    def _request_data(self, post: Mapping[str, str] | None = None) -> dict[str, Any]:
        # Built from our configured ACS URL, not from the incoming request: behind a proxy the
        # Host header may differ, and Destination must match what we registered.
        u = urlsplit(self.acs_url)
        return {"https": "on" if u.scheme == "https" else "off", "http_host": u.netloc, "script_name": u.path,
                "get_data": {}, "post_data": dict(post or {})}

    # -- login --------------------------------------------------------------------------
    def start_login(self, pending: PendingLogin, redirect_uri: str) -> LoginStart:
        step_up = pending.step_up is not None  # ForceAuthn + RequestedAuthnContext (docs/step-up-mfa.md)
        auth = OneLogin_Saml2_Auth(self._request_data(), self.settings(step_up=step_up))
        # RelayState keys the server-owned pending login
        url = auth.login(return_to=pending.state, force_authn=step_up and self.cfg.step_up.force_authn)
        return LoginStart(str(url), request_id=auth.get_last_request_id())

    def finish_login(self, pending: PendingLogin | None, params: Mapping[str, str],
                     redirect_uri: str) -> Identity:
        b64 = params.get("SAMLResponse", "")
        if not b64:
            raise LoginError("no SAMLResponse in the callback")
        if len(b64) > MAX_RESPONSE_B64:
            raise LoginError("SAMLResponse too large", code="saml_too_large")
        settings = self.settings()
        try:
            resp = OneLogin_Saml2_Response(settings, b64)
        except Exception as e:  # noqa: BLE001 - not base64, not XML, DOCTYPE/entities (defusedxml), ...
            raise refused("structure", f"SAMLResponse unreadable: {type(e).__name__}") from None
        request_id = pending.request_id if pending else None
        try:
            resp.is_valid(self._request_data(params), request_id=request_id, raise_exceptions=True)
        except Exception as e:  # noqa: BLE001 - python3-saml raises ValidationError and others
            reason = str(e)[:300]
            if "status code of the Response was not Success" in reason:
                raise IdpDenied(reason.replace("The status code of the Response was not Success, was ", "")) from None
            raise refused(check_of(e), f"SAMLResponse rejected: {reason}") from None
        self._strict_checks(resp, request_id)
        identity = self._identity(resp)
        return replace(identity, passthrough=b64) if self.cfg.aws_passthrough else identity

    def looks_unsolicited(self, params: Mapping[str, str]) -> bool:
        """Whether the callback carries a SAML Response without InResponseTo (IdP-initiated): only to
        choose what a refused callback says (nothing in it is trusted; it is not verified here)."""
        b64 = params.get("SAMLResponse", "")
        if not b64 or len(b64) > MAX_RESPONSE_B64:
            return False
        try:
            root = OneLogin_Saml2_XML.to_etree(base64.b64decode(b64, validate=False))
        except Exception:  # noqa: BLE001 - not base64, not XML, DOCTYPE: not ours to describe
            return False
        return bool(root.tag == f"{{{C.NS_SAMLP}}}Response" and root.get("InResponseTo") is None)

    def _strict_checks(self, resp: OneLogin_Saml2_Response, request_id: str | None) -> None:
        """What python3-saml leaves loose: InResponseTo, exact addressing, our clock skew, replay."""
        self._check_in_response_to(resp, request_id)
        self._check_addressing(resp)
        now = int(self.clock())
        expires = self._check_validity(resp, now)
        self._check_replay(resp, expires, now)

    def _check_in_response_to(self, resp: OneLogin_Saml2_Response, request_id: str | None) -> None:
        """The response answers the AuthnRequest we made (or is unsolicited, where that is allowed)."""
        in_response_to = resp.get_in_response_to()
        if request_id is None:
            if not self.allows_unsolicited:
                raise unsolicited("unsolicited SAML response")
            if in_response_to is not None:
                raise unsolicited("InResponseTo names a request we have no record of")
        elif in_response_to is None:
            raise unsolicited("response does not answer our AuthnRequest (no InResponseTo)")
        elif in_response_to != request_id:
            raise refused("request", "InResponseTo does not match our AuthnRequest")

    def _check_addressing(self, resp: OneLogin_Saml2_Response) -> None:
        """Issuer is this IdP; Destination, Recipient and Audience are exactly ours (or AWS's, for passthrough)."""
        passthrough = self.cfg.aws_passthrough

        def ours_or_aws(url: str | None) -> bool:
            return url == self.acs_url or (passthrough and url is not None and is_aws_signin_saml_url(url))

        issuers = resp.get_issuers()
        if not issuers or any(i != self.idp_settings()["entityId"] for i in issuers):
            raise refused("issuer", "Issuer is not this IdP's entity id")
        dest = resp.document.get("Destination")
        if dest is not None and not ours_or_aws(dest):
            raise refused("destination", f"Destination {dest[:200]!r} is not our ACS")
        recipients = [scd.get("Recipient") for scd in resp._query_assertion(
            "/saml:Subject/saml:SubjectConfirmation[@Method='urn:oasis:names:tc:SAML:2.0:cm:bearer']"
            "/saml:SubjectConfirmationData")]
        if not any(ours_or_aws(r) for r in recipients):
            raise refused("recipient", "no bearer SubjectConfirmation with our ACS as Recipient")
        audiences = resp.get_audiences()
        if self.sp_entity_id not in audiences and not (
                passthrough and any(is_aws_saml_audience(a) for a in audiences)):
            raise refused("audience", "our entity id is not an Audience of the assertion")

    def _check_validity(self, resp: OneLogin_Saml2_Response, now: int) -> list[int]:
        """NotBefore has come and no NotOnOrAfter has passed (with our skew); returns every NotOnOrAfter."""
        skew = self.cfg.clock_skew
        expires = []
        for cond in resp._query_assertion("/saml:Conditions"):
            nb, na = cond.get("NotBefore"), cond.get("NotOnOrAfter")
            if nb and OneLogin_Saml2_Utils.parse_SAML_to_time(nb) > now + skew:
                raise refused("validity start", "assertion not yet valid (NotBefore)")
            if na:
                expires.append(OneLogin_Saml2_Utils.parse_SAML_to_time(na))
        for scd in resp._query_assertion("/saml:Subject/saml:SubjectConfirmation/saml:SubjectConfirmationData"):
            if scd.get("NotOnOrAfter"):
                expires.append(OneLogin_Saml2_Utils.parse_SAML_to_time(scd.get("NotOnOrAfter")))
        if not expires:
            raise refused("expiry", "assertion has no NotOnOrAfter")
        if min(expires) <= now - skew:
            raise refused("expiry", "assertion has expired (NotOnOrAfter)")
        return expires

    def _check_replay(self, resp: OneLogin_Saml2_Response, expires: list[int], now: int) -> None:
        """The assertion ID was not seen before; it is remembered until it could no longer be accepted anyway."""
        assertion_id = resp.get_assertion_id()
        if not assertion_id:
            raise refused("structure", "assertion has no ID")
        ttl = max(60, max(expires) - now + self.cfg.clock_skew)
        if not self.replay_guard(f"saml:{self.id}:{assertion_id}", ttl):
            raise refused("replay", "assertion was already used")

    def _identity(self, resp: OneLogin_Saml2_Response) -> Identity:
        attrs: dict[str, list[str]] = {k: [str(v) for v in vs] for k, vs in resp.get_attributes().items()}
        name_id = str(resp.get_nameid() or "")
        fmt = resp.get_nameid_format()
        subject = subject_from(self.cfg, name_id, attrs)

        def one(what: str) -> str | None:
            values = first_present(attrs, self.cfg.attribute(what))
            return values[0] if values else None

        email = one("email") or (name_id if fmt and fmt.endswith("emailAddress") else None)
        contexts = set(resp.get_authn_contexts())
        amr = tuple(attrs.get(ENTRA_AMR, ()))
        mfa = bool((contexts | set(amr)) & set(self.cfg.mfa_authn_contexts))
        issuers = resp.get_issuers()
        claims: dict[str, Any] = {k: (v[0] if len(v) == 1 else v) for k, v in attrs.items()}
        claims["name_id_format"] = fmt
        return Identity(connector_id=self.id, subject=subject, issuer=str(issuers[0]) if issuers else "",
                        email=email, name=one("name"), groups=tuple(first_present(attrs, self.cfg.attribute("groups"))),
                        claims=claims, authn_time=authn_instant(resp), mfa=mfa, amr=amr,
                        acr=_acr(contexts, self.cfg.mfa_authn_contexts),
                        warnings=tuple(attribute_warnings(self.cfg, attrs) + name_id_warnings(self.cfg, fmt, attrs)))


def _acr(contexts: set[str], mfa_contexts: list[str]) -> str | None:
    """The one AuthnContextClassRef kept as ``acr``: an MFA one when there is one, else the first by name."""
    mfa = sorted(contexts & set(mfa_contexts))
    return mfa[0] if mfa else (sorted(contexts)[0] if contexts else None)
