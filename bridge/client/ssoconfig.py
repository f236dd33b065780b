"""``~/.aws/config`` for the bridge's Identity Center protocol, and how roles are named in it. Standard
library only: `bridge configure --sso` (the light client) writes it, the portal's AWS CLI page shows
the very same text, the Identity Center server (bridge/protocols/identity_center.py) and `bridge explain` name
roles with the same function.

**Roles by name.** Identity Center names a role by its role name within an account. One role ARN
granted by several rules is one grant already (the rules engine merges them: the first rule sets
durations, session name and label; tags merge, the first value of a key wins). Two *different*
roles with one name in one account (role paths: ``role/Admin`` and ``role/team/Admin``) resolve
deterministically: the shorter role path wins, then the smaller ARN. The other one is not in the
Identity Center role list (the portal and the ``bridge`` CLI still offer it).

**The config file.** `configure --sso` writes an ``[sso-session NAME]``, one ``[profile <alias>-<role>]``
per role in the Identity Center role list, and a ``[services NAME-endpoints]`` section pointing
``sso_oidc`` and ``sso`` at ``<base_url>/sso`` (botocore's key for a service in a ``services`` section
is its service id in snake case: ``sso_oidc``, the same as in ``AWS_ENDPOINT_URL_SSO_OIDC``). Each
section it writes starts with the ``MARKER`` comment; rewriting replaces only sections with that
marker (and credential_process profiles that `bridge configure` wrote for the same bridge), refuses
a same-named section of anyone else's, and keeps every other byte of the file (comments, spacing,
CRLF line ends, other sections, the lines between sections).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from bridge.client.core import profile_name

T = TypeVar("T")
MARKER = "# federation-bridge: written by `bridge configure --sso`; rerunning it replaces this section"
MARKER_PREFIX = "# federation-bridge:"
SCOPES = "sso:account:access"
DEFAULT_SESSION = "bridge"
SESSION_RE = re.compile(r"\A[A-Za-z0-9_.+@-]{1,64}\Z")
REGION_RE = re.compile(r"\A[a-z]{2}(-[a-z]+)+-\d\Z")
Key = tuple[str, str]  # (section kind, name): ("profile", "sandbox-Admin"), ("sso-session", "bridge")


# ---- roles by name ------------------------------------------------------------------------------


def role_path(role_arn: str) -> str:
    """``arn:…:role/team/Admin`` → ``/team/``; ``…:role/Admin`` → ``/``."""
    resource = role_arn.split(":", 5)[-1]
    inner = resource.split("/")[1:-1]
    return "/" + "".join(f"{p}/" for p in inner)


def name_order(account_id: str, role_name: str, role_arn: str) -> tuple[str, str, int, str]:
    """Sort key: per account and role name, the grant that name serves comes first (shortest role
    path, then the smaller ARN)."""
    return account_id, role_name, role_path(role_arn).count("/"), role_arn


def role_names(items: Iterable[T], key: Callable[[T], tuple[str, str, str]]) -> dict[str, dict[str, list[T]]]:
    """account id → role name → [the item that name serves, then the ones it shadows], for items whose
    ``key`` is (account id, role name, role ARN). Accounts and names in a stable (sorted) order."""
    out: dict[str, dict[str, list[T]]] = {}
    for item in sorted(items, key=lambda i: name_order(*key(i))):
        account, name, _ = key(item)
        out.setdefault(account, {}).setdefault(name, []).append(item)
    return out


def why_wins(winner_arn: str, loser_arn: str) -> str:
    """Why ``winner_arn`` holds the role name rather than ``loser_arn``."""
    w, lo = role_path(winner_arn), role_path(loser_arn)
    if w.count("/") != lo.count("/"):
        return f"shorter role path ({w} vs {lo})"
    return "role paths of the same depth; the smaller ARN wins"


def role_list(grants: Sequence[Any], merged: Mapping[str, Sequence[str]] | None = None) -> list[dict[str, Any]]:
    """What `bridge explain` shows of the Identity Center role list, for grants (``bridge.domain.identity.Grant``,
    in the engine's order): per grant, the (account, role name) it is listed as, or why it is not.
    ``merged``: role ARN → the other rules whose grant of that role merged into this one."""
    merged = merged or {}
    served = role_names([g for g in grants if g.path != "passthrough"],
                        lambda g: (g.account_id, g.role_name, g.role_arn))
    out = []
    for g in grants:
        doc: dict[str, Any] = {"role_arn": g.role_arn, "account_id": g.account_id, "role_name": g.role_name,
                               "rule": g.via, "merged_rules": list(merged.get(g.role_arn, ()))}
        if g.path == "passthrough":
            doc.update(listed=False, reason="pass-through grants need the browser (the portal)")
        else:
            winner = served[g.account_id][g.role_name][0]
            others = [o.role_arn for o in served[g.account_id][g.role_name] if o is not g]
            doc.update(listed=winner is g, shares_name_with=others)
            if winner is not g:
                doc["listed_instead"] = winner.role_arn
                doc["reason"] = (f"{winner.role_arn} holds the name {g.role_name!r} in account {g.account_id}: "
                                 f"{why_wins(winner.role_arn, g.role_arn)}")
            elif others:
                doc["reason"] = (f"also granted under this name: {', '.join(others)}; this one wins: "
                                 + "; ".join(why_wins(g.role_arn, o) for o in others))
        out.append(doc)
    return out


def role_list_lines(entries: Sequence[Mapping[str, Any]]) -> list[str]:
    """``role_list`` as the text `bridge explain` prints."""
    lines = [f"Identity Center role list (aws sso, SDK profiles: sso_account_id + sso_role_name; "
             f"{sum(e['listed'] for e in entries)} of {len(entries)} grant(s)):"]
    for e in entries:
        if e["listed"]:
            lines.append(f"  {e['account_id']} {e['role_name']}  ->  {e['role_arn']}")
        else:
            lines.append(f"  not listed: {e['role_arn']}")
        if e.get("reason"):
            lines.append(f"    {e['reason']}" + ("; the portal and the bridge CLI still offer it"
                                                  if not e["listed"] and e.get("listed_instead") else ""))
        if e["merged_rules"]:
            rules = ", ".join(repr(r) for r in e["merged_rules"])
            lines.append(f"    one grant from rules {e['rule']!r}, {rules}: rule {e['rule']!r} (first in file order) "
                         "sets durations, session name and label; tags merge, the first value of a key wins")
    return lines


# ---- the config sections -------------------------------------------------------------------------


@dataclass(frozen=True)
class SsoProfile:
    name: str
    account_id: str
    role_name: str
    role_arn: str


def sso_profiles(grants: Sequence[Mapping[str, Any]]) -> list[SsoProfile]:
    """One profile per role in the Identity Center role list, from grants as ``/api/v1/grants`` lists
    them (dicts), in that order. Pass-through grants need the browser and get none. Profiles are
    named ``<account alias>-<role>`` (the account id when two accounts share an alias)."""
    usable = [g for g in grants if g.get("path", "jwt") != "passthrough"]
    served = {id(names[0]) for acc in role_names(usable, lambda g: (g["account_id"], g["role_name"],
                                                                     g["role_arn"])).values()
              for names in acc.values()}
    winners = [g for g in usable if id(g) in served]
    names = [profile_name(dict(g)) for g in winners]
    out = []
    for g, name in zip(winners, names, strict=True):
        if names.count(name) > 1:
            name = profile_name({**g, "account_alias": ""})
        out.append(SsoProfile(name, g["account_id"], g["role_name"], g["role_arn"]))
    return out


def check_names(session: str, region: str) -> None:
    if not SESSION_RE.match(session):
        raise ValueError(f"session name {session!r}: use letters, digits and _ . + @ - (at most 64)")
    if not REGION_RE.match(region):
        raise ValueError(f"region {region!r} does not look like an AWS region (e.g. eu-west-1)")


def services_name(session: str) -> str:
    return f"{session}-endpoints"


def sso_sections(base_url: str, grants: Sequence[Mapping[str, Any]], *, session: str = DEFAULT_SESSION,
                 region: str = "us-east-1") -> dict[Key, str]:
    """The sections `configure --sso` writes, in order: the sso-session, a profile per role, the
    services section. Each is its text (``\\n`` line ends), header and marker first."""
    check_names(session, region)
    base = base_url.rstrip("/")
    services = services_name(session)
    out: dict[Key, str] = {("sso-session", session): _block(
        f"sso-session {session}", [f"sso_start_url = {base}", f"sso_region = {region}",
                                   f"sso_registration_scopes = {SCOPES}"])}
    for p in sso_profiles(grants):
        out[("profile", p.name)] = _block(
            f"profile {p.name}", [f"sso_session = {session}", f"sso_account_id = {p.account_id}",
                                  f"sso_role_name = {p.role_name}", f"region = {region}", f"services = {services}"])
    out[("services", services)] = _block(
        f"services {services}", ["sso_oidc =", f"  endpoint_url = {base}/sso", "sso =", f"  endpoint_url = {base}/sso"])
    return out


def _block(header: str, lines: list[str]) -> str:
    return "".join(f"{line}\n" for line in [f"[{header}]", MARKER, *lines])


def sso_config_text(base_url: str, grants: Sequence[Mapping[str, Any]], *, session: str = DEFAULT_SESSION,
                    region: str = "us-east-1") -> str:
    """The whole snippet: what `configure --sso` writes into an empty file (the portal shows this)."""
    return upsert_sections("", sso_sections(base_url, grants, session=session, region=region), base_url)[0]


def configure_sso_answers(base_url: str, *, session: str = DEFAULT_SESSION,
                          region: str = "us-east-1") -> list[tuple[str, str]]:
    """What to type at `aws configure sso`'s prompts (their wording, then the answer)."""
    return [("SSO session name", session), ("SSO start URL", base_url.rstrip("/")), ("SSO region", region),
            ("SSO registration scopes", SCOPES)]


def endpoint_env(base_url: str) -> list[tuple[str, str]]:
    """The environment form of the services section (what `aws configure sso` needs to reach the bridge)."""
    url = f"{base_url.rstrip('/')}/sso"
    return [("AWS_ENDPOINT_URL_SSO_OIDC", url), ("AWS_ENDPOINT_URL_SSO", url)]


# ---- rewriting a config file -------------------------------------------------------------------------


class ForeignSections(Exception):
    """Sections of the names the bridge would write exist and are not the bridge's."""

    def __init__(self, keys: list[Key]) -> None:
        super().__init__(", ".join(f"[{k} {n}]" for k, n in keys))
        self.keys = keys


def _lines(text: str) -> list[str]:
    """Lines with their ends (``\\n`` or ``\\r\\n``) kept; only ``\\n`` splits, as configparser reads."""
    return re.findall(r"[^\n]*\n|[^\n]+\Z", text)


def section_key(line: str) -> Key | None:
    """The (kind, name) of a section header line as botocore reads it, e.g. ``[profile  dev ]`` →
    ``("profile", "dev")``; ``("", header)`` for other sections (``[default]``); None if not a header."""
    s = line.rstrip("\r\n")
    if not s.startswith("[") or "]" not in s:
        return None
    header = s[1:s.rindex("]")].strip()
    try:
        parts = shlex.split(header)
    except ValueError:
        return "", header
    if len(parts) == 2 and parts[0] in ("profile", "sso-session", "services"):
        return parts[0], parts[1]
    return "", header


def _content(line: str) -> bool:
    """A line that is part of a section's settings (not blank, not a comment)."""
    s = line.strip()
    return bool(s) and not s.startswith(("#", ";"))


def is_own(body: Sequence[str], base_url: str) -> bool:
    """A section the bridge wrote: it has the marker, or it is a credential_process profile that
    `bridge configure` wrote for this same bridge."""
    if any(line.strip().startswith(MARKER_PREFIX) for line in body):
        return True
    needle = f" credential-process --url {base_url.rstrip('/')} --role "
    return any(line.strip().startswith("credential_process") and needle in line for line in body)


def upsert_sections(text: str, blocks: Mapping[Key, str], base_url: str) -> tuple[str, list[Key], list[Key]]:
    """Put ``blocks`` into config ``text``: a section of the same (kind, name) that the bridge wrote is
    replaced in place — up to its last setting; the blank and comment lines that follow it stay —
    others are appended in order, after a blank line. Every other byte stays as it was; new lines use
    the file's line ends. Raises ForeignSections (nothing changed) when a same-named section is not
    the bridge's. Returns (new text, keys replaced, keys added)."""
    lines = _lines(text)
    eol = _line_end(lines)
    heads, spans, keys = _sections(lines)
    foreign = [k for k, (s, e) in zip(keys, spans, strict=True) if k in blocks and not is_own(lines[s:e], base_url)]
    if foreign:
        raise ForeignSections(list(dict.fromkeys(foreign)))
    out = lines[: heads[0]] if heads else list(lines)
    replaced: list[Key] = []
    for key, (s, e) in zip(keys, spans, strict=True):
        if key not in blocks:
            out += lines[s:e]
            continue
        last = _last_setting(lines, s, e)
        if key not in replaced:  # a second copy of our own section (botocore refuses duplicates): dropped
            out.append(blocks[key].replace("\n", eol))
            replaced.append(key)
        out += lines[last + 1:e]
    added = [k for k in blocks if k not in replaced]
    return _append("".join(out), [blocks[k] for k in added], eol), replaced, added


def _line_end(lines: Sequence[str]) -> str:
    """The file's line end: ``\r\n`` when at least half its lines end so, else ``\n``."""
    crlf = sum(line.endswith("\r\n") for line in lines)
    return "\r\n" if crlf and crlf * 2 >= len(lines) else "\n"


def _sections(lines: Sequence[str]) -> tuple[list[int], list[tuple[int, int]], list[Key]]:
    """Header line numbers, each section's (start, end) span, and each section's key."""
    heads = [i for i, line in enumerate(lines) if section_key(line) is not None]
    spans = [(i, heads[n + 1] if n + 1 < len(heads) else len(lines)) for n, i in enumerate(heads)]
    keys = [section_key(lines[s]) or ("", "") for s, _ in spans]
    return heads, spans, keys


def _last_setting(lines: Sequence[str], s: int, e: int) -> int:
    """The section's last line that is its header, a setting or the marker (what a rewrite replaces)."""
    return max(i for i in range(s, e) if i == s or _content(lines[i]) or lines[i].strip().startswith(MARKER_PREFIX))


def _append(result: str, new_blocks: Sequence[str], eol: str) -> str:
    """``new_blocks`` added at the end of ``result``, each after a blank line."""
    for block in new_blocks:
        if result and not result.endswith("\n"):
            result += eol
        if result.strip() and _lines(result)[-1].strip():
            result += eol  # a blank line between sections
        result += block.replace("\n", eol)
    return result


def own_profiles(text: str, session: str) -> list[str]:
    """Profiles with the marker that use sso-session ``session`` (to tell which are no longer roles)."""
    lines = _lines(text)
    heads = [i for i, line in enumerate(lines) if section_key(line) is not None]
    found = []
    for n, s in enumerate(heads):
        body = lines[s:heads[n + 1] if n + 1 < len(heads) else len(lines)]
        key = section_key(lines[s])
        if key and key[0] == "profile" and any(line.strip().startswith(MARKER_PREFIX) for line in body) and any(
                re.fullmatch(rf"\s*sso_session\s*=\s*{re.escape(session)}\s*", line) for line in body):
            found.append(key[1])
    return found
