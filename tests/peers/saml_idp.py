"""Upstream SAML 2.0 IdP test peer: pysaml2 in a small Flask app.

    IDP_PORT=7100 IDP_CERT_DIR=certs SP_METADATA=sp.xml [AUTO_LOGIN=alice] python saml_idp.py

Serves its metadata at /metadata, SP-initiated SSO at /sso/redirect (HTTP-Redirect), a
password form, and answers with a Response whose Response and Assertion are both signed
(RSA-SHA256) and POSTed to the SP's ACS. Besides the users with the bridge's default attribute names,
two speak LDAP like SimpleSAMLphp and Shibboleth do: ``lola`` (friendly names: mail, displayName,
memberOf, uid, eduPersonPrincipalName) and ``otto`` (their urn:oid forms). Their NameID follows the
AuthnRequest's NameIDPolicy like SimpleSAMLphp's: persistent when asked for, else transient (a new
value per response). GET /last-request says which NameIDPolicy Format the last AuthnRequest asked for,
its ForceAuthn and its RequestedAuthnContext. ``frank`` has a single sign-on session (a cookie): his next
AuthnRequest without ForceAuthn is answered at once, password-only, with the first AuthnInstant; with
ForceAuthn the form asks again, and his one-time code (424242) makes the answer MobileTwoFactorContract.
POST /ignore-force-authn makes the IdP answer ForceAuthn from the session anyway (a misbehaving IdP).
Runs as its own process: pysaml2 prints a
CryptographyDeprecationWarning at import, which must not reach a `-W error` test process.
"""

import os
import secrets
import shutil
import time

from flask import Flask, request, session
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.authn_context import PASSWORDPROTECTEDTRANSPORT
from saml2.config import IdPConfig
from saml2.metadata import create_metadata_string
from saml2.saml import (
    NAME_FORMAT_URI,
    NAMEID_FORMAT_EMAILADDRESS,
    NAMEID_FORMAT_PERSISTENT,
    NAMEID_FORMAT_TRANSIENT,
    NameID,
)
from saml2.server import Server
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256

HERE = os.path.dirname(os.path.abspath(__file__))
PORT = int(os.environ.get("IDP_PORT", "7100"))
CERTS = os.environ.get("IDP_CERT_DIR", os.path.join(HERE, "certs"))
BASE = f"http://127.0.0.1:{PORT}"
ROLE = "arn:aws:iam::123456789012:role/FederatedAdmin,arn:aws:iam::123456789012:saml-provider/TestIdP"
MFA = "urn:oasis:names:tc:SAML:2.0:ac:classes:MobileTwoFactorContract"
USERS = {
    "alice": {"password": "alice-pw", "mfa": True,
              "attrs": {"email": ["alice@example.com"], "name": ["Alice Example"], "department": ["Platform"],
                        "groups": ["aws-admins", "aws-readonly"],
                        "https://aws.amazon.com/SAML/Attributes/Role": [ROLE],
                        "https://aws.amazon.com/SAML/Attributes/RoleSessionName": ["alice@example.com"]}},
    "frank": {"password": "frank-pw", "mfa": False, "otp": "424242", "sso": True,
              "attrs": {"email": ["frank@example.com"], "name": ["Frank"], "groups": ["aws-admins"]}},
    "bob": {"password": "bob-pw", "mfa": False,
            "attrs": {"email": ["bob@example.com"], "name": ["Bob"], "groups": ["aws-readonly"]}},
    "lola": {"password": "lola-pw", "mfa": False, "nameid": "policy",
             "attrs": {"mail": ["lola@example.com"], "displayName": ["Lola Ldap"], "uid": ["lola"],
                       "eduPersonPrincipalName": ["lola@example.com"], "memberOf": ["aws-admins", "aws-readonly"]}},
    "otto": {"password": "otto-pw", "mfa": False, "nameid": "policy",
             "attrs": {"urn:oid:0.9.2342.19200300.100.1.3": ["otto@example.com"],
                       "urn:oid:2.16.840.1.113730.3.1.241": ["Otto Oid"],
                       "urn:oid:1.3.6.1.4.1.5923.1.1.1.6": ["otto@example.com"],
                       "urn:oid:1.3.6.1.4.1.5923.1.5.1.1": ["aws-readonly"]}},
}
LAST = {"name_id_policy": None, "force_authn": None, "authn_context": None, "comparison": None, "forms": 0}
IGNORE_FORCE_AUTHN = {"on": False}
CONFIG = {
    "entityid": f"{BASE}/metadata",
    "service": {"idp": {"endpoints": {"single_sign_on_service": [(f"{BASE}/sso/redirect", BINDING_HTTP_REDIRECT)]},
                        "name_id_format": [NAMEID_FORMAT_EMAILADDRESS, NAMEID_FORMAT_PERSISTENT,
                                           NAMEID_FORMAT_TRANSIENT],
                        "policy": {"default": {"lifetime": {"minutes": 5}, "attribute_restrictions": None,
                                               "name_form": NAME_FORMAT_URI, "entity_categories": []}}}},
    "key_file": os.path.join(CERTS, "idp.key"), "cert_file": os.path.join(CERTS, "idp.crt"),
    "xmlsec_binary": shutil.which("xmlsec1"),
    "attribute_map_dir": os.path.join(HERE, "attrmap"),
    "metadata": {"local": [os.environ.get("SP_METADATA", os.path.join(HERE, "sp-metadata.xml"))]},
}
idp = Server(config=IdPConfig().load(CONFIG))
app = Flask(__name__)
app.secret_key = "test-only"
LOGIN = """<!doctype html><title>Test SAML IdP</title><h1>Test SAML IdP</h1>
<form method="post" action="/login"><input id="username" name="username">
<input id="password" name="password" type="password"><input id="otp" name="otp">
<button id="submit" type="submit">Sign in</button></form>"""


@app.get("/metadata")
def metadata():
    return create_metadata_string(None, idp.config, sign=False), 200, {"Content-Type": "application/xml"}


@app.get("/sso/redirect")
def sso():
    req = idp.parse_authn_request(request.args["SAMLRequest"], BINDING_HTTP_REDIRECT)
    policy = req.message.name_id_policy.format if req.message.name_id_policy is not None else None
    LAST["name_id_policy"] = policy
    force = req.message.force_authn in ("true", "1", True)
    rac = req.message.requested_authn_context
    LAST["force_authn"] = req.message.force_authn
    LAST["authn_context"] = [c.text for c in rac.authn_context_class_ref] if rac is not None else None
    LAST["comparison"] = rac.comparison if rac is not None else None
    session["authn"] = {"id": req.message.id, "sp": req.message.issuer.text,
                        "relay": request.args.get("RelayState", ""), "policy": policy}
    sso = session.get("sso")
    if sso and (not force or IGNORE_FORCE_AUTHN["on"]):  # single sign-on: the session's user, as signed in then
        return respond(sso["user"], sso["mfa"], sso["at"])
    if os.environ.get("AUTO_LOGIN"):
        return respond(os.environ["AUTO_LOGIN"])
    LAST["forms"] += 1
    return LOGIN


@app.get("/last-request")
def last_request():
    return dict(LAST)


@app.post("/ignore-force-authn")
def ignore_force_authn():
    IGNORE_FORCE_AUTHN["on"] = request.args.get("on", "1") == "1"
    return dict(IGNORE_FORCE_AUTHN)


@app.post("/login")
def login():
    u = request.form.get("username", "")
    if USERS.get(u, {}).get("password") != request.form.get("password"):
        return LOGIN, 401
    mfa = USERS[u]["mfa"] or bool(USERS[u].get("otp") and request.form.get("otp") == USERS[u]["otp"])
    if USERS[u].get("sso"):
        session["sso"] = {"user": u, "mfa": mfa, "at": int(time.time())}
    return respond(u, mfa)


def respond(user, mfa=None, at=None):
    a = session.pop("authn")
    acs = idp.config.metadata.assertion_consumer_service(a["sp"], binding=BINDING_HTTP_POST)[0]["location"]
    u = USERS[user]
    if u.get("nameid") == "policy":  # SimpleSAMLphp: persistent if asked for, else a transient one
        name_id = (NameID(format=NAMEID_FORMAT_PERSISTENT, text=f"{user}-persistent-0001")
                   if a["policy"] == NAMEID_FORMAT_PERSISTENT
                   else NameID(format=NAMEID_FORMAT_TRANSIENT, text="_" + secrets.token_hex(16)))
    else:
        name_id = NameID(format=NAMEID_FORMAT_EMAILADDRESS, text=u["attrs"]["email"][0])
    resp = idp.create_authn_response(
        dict(u["attrs"]), in_response_to=a["id"], destination=acs, sp_entity_id=a["sp"], userid=user,
        name_id=name_id,
        authn={"class_ref": MFA if (u["mfa"] if mfa is None else mfa) else PASSWORDPROTECTEDTRANSPORT,
               "authn_instant": at or int(time.time())},
        sign_assertion=True, sign_response=True, sign_alg=SIG_RSA_SHA256, digest_alg=DIGEST_SHA256)
    return idp.apply_binding(BINDING_HTTP_POST, str(resp), acs, a["relay"], response=True)["data"]


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=PORT)
