"""The bridge's error tree. Every failure a user can hit is one of these.

    BridgeError                      code, HTTP status, user-facing title/message/hint
    ├── ConfigError                  bad settings; carries every problem found (startup only)
    ├── LoginError (400)             state missing/mismatched/replayed/expired, bad callback
    │   ├── IdpDenied (403)          the IdP said no (error=access_denied, ...)
    │   ├── InvalidIdToken (401)     signature, iss, aud, exp, iat, nonce
    │   ├── EmailUnverified (403)    the IdP does not vouch for the e-mail (email_verified not true)
    │   ├── SamlUnsolicited (400)    a SAML response to no sign-in the bridge started (IdP-initiated)
    │   └── StepUpRefused (403)      a step-up's answer is not what was asked (no MFA, stale, another user)
    ├── NotSignedIn (401)            no or expired bridge session
    ├── NotGranted (403)             the role is not one of the user's grants
    │   ├── MfaRequired (403)        the role needs a sign-in with MFA (step-up)
    │   └── AdminOnly (403)          the admin pages, for a non-admin
    ├── BadRequest (400)             malformed form data (CSRF, duration, ...)
    │   └── PassthroughExpired (400) the upstream IdP's artifact is past what AWS takes
    ├── RateLimited (429)            too many sign-ins per IP / credential requests per user
    ├── UpstreamUnavailable (503)    discovery/JWKS/token endpoint unreachable
    ├── StoreUnavailable (503)       Redis unreachable
    └── StsError                     an STS answer, mapped from its error code
        └── StsUnavailable (503)     STS unreachable or throttled past the retries
            └── StsBusy (503)        too many STS calls already waiting in this process (aws.sts_max_concurrency)

User-facing text is generic and lives in these classes; ``detail`` carries specifics
for the log (never a token, assertion or secret) and is shown to the user only when
``show_detail`` is true (it then holds text we chose or the IdP/STS reason).
"""

from __future__ import annotations

from typing import Any


class BridgeError(Exception):
    """Base of every expected failure: rendered as a page or JSON, never as a 500."""

    code = "error"
    status = 500
    title = "Something went wrong"
    message = "The bridge could not complete your request."
    hint = "Try again. If it keeps happening, give the request id to your administrator."
    show_detail = False

    def __init__(self, detail: str = "", *, code: str | None = None, message: str | None = None,
                 hint: str | None = None, status: int | None = None, title: str | None = None) -> None:
        super().__init__(detail or self.message)
        self.detail = detail
        if title is not None:
            self.title = title
        if code is not None:
            self.code = code
        if message is not None:
            self.message = message
        if hint is not None:
            self.hint = hint
        if status is not None:
            self.status = status

    def public(self) -> dict[str, str]:
        """What the user may see (page or JSON body, request id added by the web layer)."""
        out = {"error": self.code, "title": self.title, "message": self.message, "hint": self.hint}
        if self.show_detail and self.detail:
            out["detail"] = self.detail
        return out


class ConfigError(BridgeError):
    """Settings that cannot work. ``problems`` lists every one as ``path: message``."""

    code = "config_invalid"
    title = "Configuration error"

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class LoginError(BridgeError):
    code = "login_failed"
    status = 400
    title = "Sign-in could not be completed"
    message = "The sign-in response could not be accepted."
    hint = "Start the sign-in again from the bridge's sign-in page."


class IdpDenied(LoginError):
    code = "idp_denied"
    status = 403
    title = "Your identity provider refused the sign-in"
    message = "The identity provider did not sign you in."
    hint = "Check with your identity provider's administrator that you may use this application."
    show_detail = True


class InvalidIdToken(LoginError):
    code = "invalid_id_token"
    status = 401
    title = "The identity provider's answer was rejected"
    message = "The ID token from your identity provider did not pass verification."
    hint = ("Start the sign-in again. If it keeps failing, the identity provider or the bridge's "
            "connector settings (issuer, client id, clock) need attention.")


class EmailUnverified(LoginError):
    """The ID token carries an e-mail the IdP does not say is verified: rules and tags trust e-mail,
    so the sign-in is refused rather than signed in without it."""

    code = "email_unverified"
    status = 403
    title = "Your e-mail address is not verified"
    message = ("Your identity provider says the e-mail address of your account has not been verified, "
               "so the bridge cannot trust it to decide your access.")
    hint = ("Verify your e-mail address with your identity provider (follow its verification message, or ask "
            "its administrator), then sign in again.")


class SamlUnsolicited(LoginError):
    """A SAML response that answers no AuthnRequest of ours: the user started at the IdP (its app
    dashboard), which the bridge refuses unless ``insecure_allow_idp_initiated``."""

    code = "saml_unsolicited"
    title = "Start the sign-in here"
    message = ("This sign-in was started at your identity provider (from its app dashboard, for example), not "
               "here: the bridge only accepts answers to sign-ins it started itself.")
    hint = "Choose your identity provider below to sign in; it takes you through the same steps."


class NotSignedIn(BridgeError):
    code = "not_signed_in"
    status = 401
    title = "Not signed in"
    message = "You are not signed in, or your session has ended."
    hint = "Sign in again."


class NotGranted(BridgeError):
    code = "not_granted"
    status = 403
    title = "Not allowed"
    message = "You do not have access to this role."
    hint = "Ask your administrator for access, or pick a role listed on your portal."
    show_detail = True

    def __init__(self, detail: str = "", *, request_url: str | None = None, **kw: Any) -> None:
        super().__init__(detail, **kw)
        self.request_url = request_url  # a role the user may request: where to ask for it

    def public(self) -> dict[str, str]:
        out = super().public()
        if self.request_url:
            out["request_url"] = self.request_url
        return out


class MfaRequired(NotGranted):
    code = "mfa_required"
    title = "Multi-factor sign-in required"
    message = "This role requires that you sign in with multi-factor authentication (MFA)."
    hint = ("Choose \"Sign in again with MFA\" on the portal and complete the MFA prompt of your identity "
            "provider.")
    show_detail = False


class StepUpRefused(LoginError):
    """The IdP's answer to a step-up sign-in does not prove what the role needs (bridge/core/stepup.py):
    each refusal has its own code (``step_up_no_mfa``, ``step_up_stale``, ...) and text."""

    code = "step_up_refused"
    status = 403
    title = "The MFA sign-in was not accepted"


class AdminOnly(NotGranted):
    code = "admin_only"
    title = "Administrators only"
    message = "This page is for the bridge's administrators."
    hint = "Ask an administrator to add you to one of the admin groups (admin.groups)."
    show_detail = False


class BadRequest(BridgeError):
    code = "bad_request"
    status = 400
    title = "Bad request"
    message = "The request could not be understood."
    hint = "Go back to the portal and try again."
    show_detail = True


class UpstreamUnavailable(BridgeError):
    code = "idp_unavailable"
    status = 503
    title = "Identity provider unreachable"
    message = "The bridge could not reach your identity provider."
    hint = "Try again in a minute. If it persists, the identity provider may be down."


class PassthroughExpired(BadRequest):
    """An aws_passthrough grant whose upstream artifact AWS no longer takes (SAML: 5 minutes after the
    IdP issued the assertion; OIDC: the ID token expired)."""

    code = "passthrough_expired"
    title = "Sign in again"
    message = ("Your identity provider's sign-in can only be used for AWS for a few minutes after the identity "
               "provider issued it, and that time has passed.")
    hint = "Sign in again, then pick the role right away."
    show_detail = False


class RateLimited(BridgeError):
    code = "rate_limited"
    status = 429
    title = "Too many requests"
    message = "Too many requests in a short time."
    hint = "Wait a minute, then try again."

    def __init__(self, detail: str = "", *, retry_after: int = 60) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class StoreUnavailable(BridgeError):
    code = "store_unavailable"
    status = 503
    title = "Temporarily unavailable"
    message = "The bridge's session store is unreachable."
    hint = "Try again in a minute. Your administrator has been told through the logs."


class StsError(BridgeError):
    code = "sts_error"
    status = 502
    title = "AWS refused the request"
    message = "AWS STS did not issue credentials."
    hint = "Give the request id to your administrator."
    show_detail = True
    sts_request_id = ""  # the STS answer's RequestId, when STS answered (for the audit trail)


class StsUnavailable(StsError):
    code = "sts_unavailable"
    status = 503
    title = "AWS STS unreachable"
    message = "The bridge could not reach AWS STS."
    hint = "Try again in a minute."
    show_detail = False


class StsBusy(StsUnavailable):
    """Refused before calling STS: this process already waits on ``aws.sts_max_concurrency`` calls."""

    code = "sts_busy"
    title = "AWS STS is slow to answer"
    message = "The bridge is already waiting on AWS STS for many requests, so it did not send yours."
    hint = "Try again in a few seconds."
