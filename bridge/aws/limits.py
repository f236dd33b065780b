"""AWS's documented limits on names, tags and durations, as pure checks and sanitizers.

Sources: docs/aws-rules.md §1.7 (tags), §2.1 (RoleSessionName), §2.5 (source
identity), §7 (AssumeRole: ExternalId, session policies, the role-chaining cap). Used by config
validation, mapping, minting and the strict validator alike, so the rules live here once.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

SESSION_NAME_RE = re.compile(r"\A[A-Za-z0-9_+=,.@-]{2,64}\Z")  # \Z: "$" would allow a trailing newline
SOURCE_IDENTITY_RE = SESSION_NAME_RE
MAX_TAGS = 50
# Session tags the bridge itself sets on every issuance (docs/step-up-mfa.md): rules may not set, override or
# shadow them, so a trust policy can believe them. One slot of AWS's 50 (tags and transitive keys) is theirs.
RESERVED_TAG_PREFIX = "bridge:"
MFA_TAG = "bridge:mfa"
RESERVED_TAGS = (MFA_TAG,)
MAX_RULE_TAGS = MAX_TAGS - len(RESERVED_TAGS)
MAX_TAG_KEY = 128
MAX_TAG_VALUE = 256
MIN_DURATION = 900
MAX_DURATION = 43200
_TAG_PUNCT = set("_.:/=+-@")
CHAINED_MAX_DURATION = 3600  # AWS caps a session reached by role chaining at one hour (§7.2)
HUB_DURATION = 900  # a hub's own session: only used at once for the next sts:AssumeRole, so the shortest
EXTERNAL_ID_RE = re.compile(r"\A[\w+=,.@:/-]{2,1224}\Z", re.ASCII)  # §7.1: AWS's \w is ASCII
MAX_POLICY_CHARS = 2048  # the plaintext of the inline policy (whitespace not counted) and the policy ARNs
MAX_POLICY_ARNS = 10
_POLICY_CHARS_RE = re.compile(r"\A[\t\n\r\x20-\xff]+\Z")
POLICY_ARN_RE = re.compile(r"\Aarn:(aws|aws-us-gov|aws-cn):iam::(\d{12}|aws):policy/[\x21-\x7e]{1,2000}\Z",
                           re.ASCII)


def _tag_char_ok(ch: str) -> bool:
    # AWS pattern [\p{L}\p{Z}\p{N}_.:/=+\-@]: letters, separators (spaces), numbers, and a few marks.
    return ch in _TAG_PUNCT or unicodedata.category(ch)[0] in "LZN"


def tag_key_problem(key: str) -> str | None:
    """Why ``key`` is not a valid session tag key, or None."""
    if not key:
        return "tag key is empty"
    if len(key) > MAX_TAG_KEY:
        return f"tag key {key[:20]!r}… is longer than {MAX_TAG_KEY} characters"
    if key.lower().startswith("aws:"):
        return f"tag key {key!r} starts with the reserved prefix 'aws:'"
    bad = sorted({c for c in key if not _tag_char_ok(c)})
    if bad:
        return f"tag key {key!r} has characters AWS does not allow: {''.join(bad)!r}"
    return None


def reserved_tag_problem(key: str) -> str | None:
    """Why a rule may not send the tag ``key`` (its prefix is the bridge's own), or None."""
    if key.lower().startswith(RESERVED_TAG_PREFIX):
        return (f"tag key {key!r} starts with {RESERVED_TAG_PREFIX!r}, which is reserved for the tags the bridge "
                f"sets itself ({', '.join(RESERVED_TAGS)}): rename the tag")
    return None


def tag_value_problem(value: str) -> str | None:
    """Why ``value`` is not a valid session tag value, or None (empty values are allowed)."""
    if len(value) > MAX_TAG_VALUE:
        return f"tag value is longer than {MAX_TAG_VALUE} characters"
    if value.lower().startswith("aws:"):
        return "tag value starts with the reserved prefix 'aws:'"
    bad = sorted({c for c in value if not _tag_char_ok(c)})
    if bad:
        return f"tag value has characters AWS does not allow: {''.join(bad)!r}"
    return None


def tags_problems(tags: dict[str, str], transitive: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Every rule a whole tag set breaks (count, each key/value, case-duplicates, transitive ⊆ keys)."""
    problems: list[str] = []
    if len(tags) > MAX_TAGS:
        problems.append(f"{len(tags)} session tags; AWS allows at most {MAX_TAGS}")
    seen: dict[str, str] = {}
    for k, v in tags.items():
        if p := tag_key_problem(k):
            problems.append(p)
        if not isinstance(v, str):
            problems.append(f"tag {k!r}: value must be a string")
        elif p := tag_value_problem(v):
            problems.append(f"tag {k!r}: {p}")
        if k.lower() in seen:
            problems.append(f"tag keys {seen[k.lower()]!r} and {k!r} differ only in case "
                            "(AWS keys are case-insensitive)")
        seen[k.lower()] = k
    if len(transitive) > MAX_TAGS:
        problems.append(f"{len(transitive)} transitive tag keys; AWS allows at most {MAX_TAGS}")
    lowered = {k.lower() for k in tags}
    for t in transitive:
        if t.lower() not in lowered:
            problems.append(f"transitive tag key {t!r} is not one of the session tags")
    return problems


def sanitize_tag_value(value: str) -> str:
    """Make a claim value a valid tag value: NFC, disallowed characters → ``-``, 256 chars max.

    ``&`` becomes ``-``, and so does ``,``; a leading ``aws:`` is neutralised as ``aws-``.
    """
    v = unicodedata.normalize("NFC", value)
    v = "".join(c if _tag_char_ok(c) else "-" for c in v)[:MAX_TAG_VALUE]
    if v.lower().startswith("aws:"):
        v = v[:3] + "-" + v[4:]
    return v


def sanitize_session_name(value: str, fallback: str = "bridge-user") -> str:
    """Fit ``value`` to RoleSessionName's ``[\\w+=,.@-]{2,64}`` (ASCII ``\\w``).

    Accents are folded (``José`` → ``Jose``), anything else not allowed becomes ``-``,
    the result is cut to 64 characters; if fewer than 2 remain, ``fallback`` is used.
    """
    folded = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode("ascii")
    out = re.sub(r"[^A-Za-z0-9_+=,.@-]", "-", folded)[:64]
    if len(out.strip("-")) < 2:
        return sanitize_session_name(fallback) if fallback != value else "bridge-user"
    return out


def prefixed_session_name(prefix: str, name: str) -> str:
    """``<prefix>.<name>`` fitted to RoleSessionName's 64 characters, the *name* (the user) kept: a long prefix
    (an app's client id, up to 64 characters) is shortened first — to what room is left, at least 16 characters,
    its end replaced by ``-`` and 6 hex of its SHA-256 so two long ids stay apart; only a name longer than 47
    characters is then cut."""
    name = sanitize_session_name(name)
    keep = max(63 - len(name), 16)
    if len(prefix) > keep:  # a prefix of 16 or fewer is never rewritten (that would lengthen it)
        prefix = f"{prefix[:keep - 7]}-{hashlib.sha256(prefix.encode()).hexdigest()[:6]}"
    return sanitize_session_name(f"{prefix}.{name}")


def duration_problem(seconds: int, max_duration: int = MAX_DURATION) -> str | None:
    """Why ``seconds`` is not a valid DurationSeconds for a role allowing ``max_duration``."""
    if seconds < MIN_DURATION:
        return f"duration {seconds}s is below AWS's minimum of {MIN_DURATION}s"
    if seconds > max_duration:
        return f"duration {seconds}s is above this role's maximum of {max_duration}s"
    return None


def external_id_problem(value: str) -> str | None:
    """Why ``value`` is not an ExternalId STS takes (§7.1), or None. The message never holds the value:
    an ExternalId is a secret shared with the account that trusts it."""
    if not 2 <= len(value) <= 1224:
        return f"an ExternalId is 2..1224 characters; this one has {len(value)}"
    if not EXTERNAL_ID_RE.match(value):
        bad = sorted({"space" if c == " " else "non-ASCII" if not c.isascii() else repr(c) for c in value
                      if not EXTERNAL_ID_RE.match(c * 2)})
        return f"an ExternalId may hold only letters, digits and _+=,.@:/- (this one has {', '.join(bad)})"
    return None


def policy_size(policy: str | None, policy_arns: tuple[str, ...] | list[str] = ()) -> int:
    """What counts against the 2,048-character limit (§7.3): the inline policy without its whitespace,
    plus the policy ARNs."""
    inline = len("".join((policy or "").split()))
    return inline + sum(len(a) for a in policy_arns)


def policy_problems(policy: str | None, policy_arns: tuple[str, ...] | list[str] = ()) -> list[str]:
    """Every session-policy rule of §7.3 that ``policy`` and ``policy_arns`` break."""
    problems: list[str] = []
    if policy is not None and not _POLICY_CHARS_RE.match(policy):
        problems.append("the session policy has characters AWS does not take (only tab, newline and "
                        "U+0020..U+00FF)")
    if len(policy_arns) > MAX_POLICY_ARNS:
        problems.append(f"{len(policy_arns)} policy ARNs; AWS takes at most {MAX_POLICY_ARNS}")
    for arn in policy_arns:
        if not POLICY_ARN_RE.match(arn):
            problems.append(f"{arn[:200]!r} is not a managed policy ARN (arn:aws:iam::<account or aws>:policy/Name)")
    size = policy_size(policy, policy_arns)
    if size > MAX_POLICY_CHARS:
        problems.append(f"the session policy and policy ARNs are {size} characters (whitespace not counted); "
                        f"AWS takes at most {MAX_POLICY_CHARS}")
    return problems
