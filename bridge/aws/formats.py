"""Credential output formats AWS tooling reads (shared/spec/aws-federation.md §4). Pure.

Values are quoted for the shell they target; nothing here logs or stores.
"""

from __future__ import annotations

import json
import re
import shlex

from bridge.identity import Credentials

PROFILE_RE = re.compile(r"\A[A-Za-z0-9_.+@-]{1,64}\Z")


def default_profile_name(creds: Credentials) -> str:
    return re.sub(r"[^A-Za-z0-9_.+@-]", "-", f"{creds.account_id}-{creds.role_arn.rsplit('/', 1)[-1]}")[:64]


def env_exports(creds: Credentials) -> str:
    """bash/zsh ``export`` lines, with AWS_CREDENTIAL_EXPIRATION and the region."""
    pairs = [
        ("AWS_ACCESS_KEY_ID", creds.access_key_id),
        ("AWS_SECRET_ACCESS_KEY", creds.secret_access_key),
        ("AWS_SESSION_TOKEN", creds.session_token),
        ("AWS_CREDENTIAL_EXPIRATION", creds.expiration_iso()),
        ("AWS_REGION", creds.region),  # read by most SDKs
        ("AWS_DEFAULT_REGION", creds.region),  # read by the AWS CLI and boto3
    ]
    return "\n".join(f"export {k}={shlex.quote(v)}" for k, v in pairs) + "\n"


def credentials_file(creds: Credentials, profile: str | None = None) -> str:
    """A ``~/.aws/credentials`` profile block."""
    name = profile or default_profile_name(creds)
    if not PROFILE_RE.match(name):
        raise ValueError("profile name may use letters, digits and _.+@- only (1..64)")
    return (f"[{name}]\n"
            f"aws_access_key_id = {creds.access_key_id}\n"
            f"aws_secret_access_key = {creds.secret_access_key}\n"
            f"aws_session_token = {creds.session_token}\n"
            f"# expires {creds.expiration_iso()} - role {creds.role_arn}\n")


def credential_process_json(creds: Credentials) -> str:
    """The ``credential_process`` stdout document: integer ``Version: 1`` (botocore insists)."""
    doc = {"Version": 1, "AccessKeyId": creds.access_key_id, "SecretAccessKey": creds.secret_access_key,
           "SessionToken": creds.session_token, "Expiration": creds.expiration_iso()}
    return json.dumps(doc, indent=2)


def api_json(creds: Credentials) -> dict[str, object]:
    """The JSON API body: the credential_process fields plus who they are for."""
    return {"Version": 1, "AccessKeyId": creds.access_key_id, "SecretAccessKey": creds.secret_access_key,
            "SessionToken": creds.session_token, "Expiration": creds.expiration_iso(),
            "AssumedRoleArn": creds.assumed_role_arn, "RoleArn": creds.role_arn,
            "RoleSessionName": creds.session_name, "Region": creds.region}


def boto3_snippet(creds: Credentials, endpoint_url: str | None) -> str:
    """Python that checks the exported credentials (no secrets embedded: reads the environment)."""
    ep = f", endpoint_url={endpoint_url!r}" if endpoint_url else ""
    return ("import boto3  # after pasting the export lines into this shell\n"
            f"print(boto3.client('sts', region_name={creds.region!r}{ep}).get_caller_identity()['Arn'])\n")
