"""Credential output formats AWS tooling reads (docs/aws-rules.md §4). Pure.

Values are quoted for the shell they target; nothing here logs or stores.
"""

from __future__ import annotations

import json
import re
import shlex

from bridge.domain.identity import Credentials

PROFILE_RE = re.compile(r"\A[A-Za-z0-9_.+@-]{1,64}\Z")


def default_profile_name(creds: Credentials) -> str:
    return re.sub(r"[^A-Za-z0-9_.+@-]", "-", f"{creds.account_id}-{creds.role_arn.rsplit('/', 1)[-1]}")[:64]


def _env_pairs(creds: Credentials) -> list[tuple[str, str]]:
    return [
        ("AWS_ACCESS_KEY_ID", creds.access_key_id),
        ("AWS_SECRET_ACCESS_KEY", creds.secret_access_key),
        ("AWS_SESSION_TOKEN", creds.session_token),
        ("AWS_CREDENTIAL_EXPIRATION", creds.expiration_iso()),
        ("AWS_REGION", creds.region),  # read by most SDKs
        ("AWS_DEFAULT_REGION", creds.region),  # read by the AWS CLI and boto3
    ]


def env_exports(creds: Credentials) -> str:
    """bash/zsh ``export`` lines, with AWS_CREDENTIAL_EXPIRATION and the region."""
    return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in _env_pairs(creds))


def fish_exports(creds: Credentials) -> str:
    """fish ``set -gx`` lines (single quotes; fish escapes only \\ and ' inside them)."""
    def q(v: str) -> str:
        return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return "".join(f"set -gx {k} {q(v)}\n" for k, v in _env_pairs(creds))


def powershell_exports(creds: Credentials) -> str:
    """PowerShell ``$Env:`` assignments (single-quoted: only ' needs doubling)."""
    return "".join(f"$Env:{k} = '{v.replace(chr(39), chr(39) * 2)}'\n" for k, v in _env_pairs(creds))


def cmd_exports(creds: Credentials) -> str:
    """Windows cmd ``set`` lines. STS values hold only [A-Za-z0-9+/=:-]; anything else is refused."""
    for _, v in _env_pairs(creds):
        if not re.fullmatch(r"[A-Za-z0-9+/=:._-]*", v):
            raise ValueError("a value has characters cmd cannot carry safely")
    return "".join(f'set "{k}={v}"\r\n' for k, v in _env_pairs(creds))


def dotenv(creds: Credentials) -> str:
    """``docker --env-file`` lines: KEY=value, no quotes (docker takes the rest of the line literally)."""
    for _, v in _env_pairs(creds):
        if "\n" in v or "\r" in v:
            raise ValueError("a value has a line break")
    return "".join(f"{k}={v}\n" for k, v in _env_pairs(creds))


def config_snippet(profile: str, bridge_url: str, role_arn: str, region: str) -> str:
    """``~/.aws/config`` profile that runs ``bridge credential-process`` (no secret on disk)."""
    if not PROFILE_RE.match(profile):
        raise ValueError("profile name may use letters, digits and _.+@- only (1..64)")
    return (f"[profile {profile}]\n"
            f"credential_process = bridge credential-process --url {shlex.quote(bridge_url)} "
            f"--role {shlex.quote(role_arn)}\n"
            f"region = {region}\n")


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
