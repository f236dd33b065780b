"""What the OIDC connector takes from the claims (ID token, then userinfo), and what it warns about.

Pure. IdPs differ in where and how they send things: LemonLDAP::NG (by default) keeps every claim out of
the ID token and sends it at userinfo only, and exports a multi-valued attribute such as the groups as one
string (``"admins; users"``). A sign-in that silently yields no e-mail and no groups is an empty portal
nobody can explain, so each such case becomes a warning naming the claim (never a value): logged at
sign-in, on the Why page, and in ``bridge check-config --probe``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bridge.domain.errors import EmailUnverified
from bridge.upstream.oidc_settings import OidcConnectorSettings

# Claims IdPs use for the same thing, to suggest when the configured one is absent.
ALTERNATIVES = {
    "email": ("email", "mail", "preferred_username", "upn", "email_address"),
    "groups": ("groups", "roles", "memberOf", "member_of", "isMemberOf", "group", "hGroups", "cognito:groups"),
}
_SEPARATORS = (";", ",", "|")


def missing_claims(cfg: OidcConnectorSettings, claims: Mapping[str, Any]) -> list[str]:
    """The configured claims (email, name, groups) the claims do not carry at all."""
    return [c for c in (cfg.email_claim, cfg.name_claim, cfg.groups_claim) if claims.get(c) is None]


def groups_from(cfg: OidcConnectorSettings, value: Any) -> tuple[tuple[str, ...], list[str]]:
    """The groups in the ``groups_claim`` value, and warnings. A list of strings (or numbers: some IdPs send
    ids) is taken as it is; one string is one group, or split at ``groups_delimiter`` when that is set;
    anything else is ignored, with a warning (never guessed at)."""
    claim = cfg.groups_claim
    if value is None or value == "" or value == []:
        return (), []
    if isinstance(value, str):
        if cfg.groups_delimiter:
            return tuple(p.strip() for p in value.split(cfg.groups_delimiter) if p.strip()), []
        seps = [s for s in _SEPARATORS if s in value]
        if seps:
            return (value,), [f"the `{claim}` claim is one string containing `{seps[0]}`, taken as one group: if it "
                              f"lists several, set groups_delimiter: \"{seps[0]}\" on the connector."]
        return (value,), []
    if isinstance(value, list):
        kept = [str(v) for v in value if isinstance(v, str | int) and not isinstance(v, bool)]
        if len(kept) < len(value):
            return tuple(kept), [f"the `{claim}` claim has {len(value) - len(kept)} item(s) that are not strings: "
                                 "they were ignored."]
        return tuple(kept), []
    return (), [f"the `{claim}` claim is a {type(value).__name__}, not a list or a string: no groups were taken "
                "from it."]


def _present(claims: Mapping[str, Any], what: str, configured: str) -> str | None:
    """Another claim that probably carries ``what`` (for the e-mail: one whose value has an ``@``)."""
    for c in ALTERNATIVES[what]:
        v = claims.get(c)
        if c != configured and v not in (None, "", []) and (what != "email" or (isinstance(v, str) and "@" in v)):
            return c
    return None


def claim_warnings(cfg: OidcConnectorSettings, claims: Mapping[str, Any], *, userinfo: str) -> list[str]:
    """Warnings for the e-mail and groups claims the IdP did not send (``userinfo``: what was read there,
    for the text). Groups count as expected when the ``groups`` scope is asked for or ``groups_claim`` was
    set: an IdP without groups (Google) and a config that knows it stay quiet."""
    where = {"read": "in the ID token or at userinfo", "failed": "in the ID token (userinfo could not be read)",
             "none": "in the ID token (the IdP has no userinfo endpoint)"}[userinfo]
    out = []
    checks = [("email", cfg.email_claim, "email_claim", "email" in cfg.scopes or "email_claim" in cfg.model_fields_set),
              ("groups", cfg.groups_claim, "groups_claim",
               "groups" in cfg.scopes or "groups_claim" in cfg.model_fields_set)]
    for what, claim, option, expected in checks:
        if not expected or claims.get(claim) is not None:
            continue
        alt = _present(claims, what, claim)
        fix = (f"it sends `{alt}`: set {option}: {alt}" if alt else
               f"have the IdP release it to this client (scope or claim mapping), or set {option}")
        out.append(f"the IdP sent no `{claim}` claim {where}, so the {what} is empty for the rules: {fix}.")
    return out


def check_email_verified(claims: Mapping[str, Any], cfg: OidcConnectorSettings) -> None:
    """Refuse (not repair) an e-mail the IdP does not vouch for: ``email_verified`` must be exactly
    true (OIDC Core §5.1), unless the connector opts out with ``insecure_accept_unverified_email``.
    No e-mail, nothing to check. The detail names the connector, never the address."""
    if cfg.insecure_accept_unverified_email or not (isinstance(e := claims.get(cfg.email_claim), str) and e):
        return
    verified = claims.get("email_verified")
    if "email_verified" not in claims:
        # Not the user's doing: the IdP does not say either way. Tell them it is the administrator's to fix.
        raise EmailUnverified(
            f"{cfg.id}: {cfg.email_claim} present but the IdP sends no email_verified claim",
            code="email_verified_missing", title="Your identity provider does not vouch for your e-mail",
            message="Your identity provider sends your e-mail address without saying whether it has been "
                    "verified (it sends no email_verified claim), so the bridge cannot trust it to decide "
                    "your access. There is nothing to verify on your side.",
            hint="Tell your administrator: the identity provider must send email_verified with the e-mail, or, "
                 "if it checks addresses itself, the bridge's connector may be set to accept them "
                 "(insecure_accept_unverified_email). Give them the request id below.")
    if verified is not True:
        raise EmailUnverified(f"{cfg.id}: {cfg.email_claim} present but email_verified is {repr(verified)[:20]}")
