"""Properties of the rules engine for arbitrary claims (hypothesis):

- every grant it emits satisfies AWS's limits (docs/aws-rules.md §1.7 and §2.5): ≤ 50 tags, key ≤ 128 / value ≤ 256
  characters of the allowed classes, no ``aws:`` prefix, no case-insensitive duplicate keys,
  transitive keys ⊆ tags, session name and source identity ``[\\w+=,.@-]{2,64}`` — and the token
  minted from it passes the project's strict validator;
- the index never changes the outcome: indexed evaluation gives exactly what testing every rule gives;
- results do not depend on the order of an identity's groups.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.aws.arn import parse_role_arn
from bridge.aws.limits import SESSION_NAME_RE, tags_problems
from bridge.aws.token import mint_token
from bridge.aws.validate import validate_assume_params, validate_jwt
from bridge.domain.identity import Grant, Identity
from bridge.keys.signing import KeyRing, generate_key, load_keyring
from bridge.mapping import GrantDefaults, decide, load_mapping

ACCOUNT = "123456789012"
ISSUER = "https://bridge.example.com"
AUD = "sts.amazonaws.com"
DEFAULTS = GrantDefaults(AUD)

RULES = load_mapping({
    "accounts": {ACCOUNT: {"alias": "sandbox", "label": "Sandbox",
                           "roles": {"Admin": {"max_session_duration": 43200},
                                     "Team": {"max_session_duration": 7200}}}},
    "rules": [
        {"name": "admins", "match": {"group": "aws-admins"},
         "grants": [{"account": "sandbox", "role": "Admin", "session_name": "{name}", "source_identity": "{email}",
                     "label": "{claims.department|default(Admin)}",
                     "tags": {"Email": "{email}", "Dept": "{claims.department}", "Teams": "{claims.teams|join}",
                              "Name": "{name|slug}", "First": "{claims.teams|first|upper}",
                              "Project": "{claims.project|truncate(300)}"},
                     "transitive_tags": ["Dept", "Teams", "email"], "duration": {"default": 3600, "max": 43200}}]},
        {"name": "more-admin-tags", "match": {"claim": "claims.department", "exists": True},
         "grants": [{"account": "sandbox", "role": "Admin",
                     "tags": {f"Extra{i}": f"{{claims.department|truncate({i + 1})}}" for i in range(48)}}]},
        {"name": "convention", "match": {"claim": "groups", "regex": r"aws#(?P<account>\d{12})#(?P<role>.+)"},
         "grants": [{"role_arn": "arn:aws:iam::{match.account}:role/{match.role}", "label": "{match.role}",
                     "session_name": "{email|local_part}", "source_identity": "{claims.project}",
                     "tags": {"Role": "{match.role}", "{match.role}": "{claims.teams|first|default()}"},
                     "transitive_tags": ["{match.role}"], "duration": {"max": 43200}}]},
        {"name": "teams", "match": {"all": [{"claim": "groups", "regex": "team-(?P<team>.*)"},
                                            {"not": {"claim": "email", "ends_with": "@contractor.example"}}]},
         "grants": [{"account": "sandbox", "role": "Team", "session_name": "{subject}",
                     "tags": {"Team": {"value": "{match.team}", "required": True},
                              "t-{match.team|slug}": "{claims.project|default(none)}",
                              "CostCenter": {"value": "{claims.cost_center}", "required": True}},
                     "duration": {"default": 7200}}]},
        {"name": "mfa-only", "match": {"any": [{"group": "aws-admins"}, {"claim": "claims.teams", "glob": "r*"}]},
         "grants": [{"role_arn": f"arn:aws:iam::{ACCOUNT}:role/Break", "mfa_required": True,
                     "session_name": "{claims.teams|join(-)}"}]},
        {"name": "suspended", "match": {"claim": "groups", "starts_with": "suspended"}, "deny": "all"},
    ]})

# Text that tries every corner: control characters, combining marks, surrogate-free astral planes,
# reserved prefixes, separators, lengths around and far beyond AWS's limits.
tricky = st.sampled_from(["", " ", "-", "@", "aws:", "AWS:x", "aws:aws:", "a,b", "a&b", "\u0301", "ß" * 300,
                          "\U0001f600" * 70, "x" * 10_000, "\n", "\x00", "Ω" * 257, "١٢٣", "a" * 64, "a" * 65])
text = st.one_of(st.text(max_size=80), st.text(min_size=200, max_size=600), tricky,
                 st.tuples(st.sampled_from(["aws:", "Aws:"]), st.text(max_size=20)).map("".join))
scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), text)
value = st.recursive(scalar, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner,
                                                                                          max_size=3), max_leaves=8)
digits = st.one_of(st.text(alphabet="0123456789", min_size=12, max_size=12), st.just("١٢٣٤٥٦٧٨٩٠١٢"))
group = st.one_of(text, st.sampled_from(["aws-admins", "suspended", "team-", "team-red"]),
                  st.tuples(st.just("aws#"), digits, st.just("#"), text).map("".join),
                  st.tuples(st.just("aws#"), digits, st.just("#"),
                            st.from_regex(r"[A-Za-z0-9+=,.@_-]{1,64}", fullmatch=True)).map("".join),
                  st.tuples(st.just("team-"), text).map("".join))
identities = st.builds(
    Identity, connector_id=st.sampled_from(["corp", "dev"]), subject=st.text(min_size=1, max_size=300),
    issuer=st.just("https://idp.example.com"), email=st.none() | text, name=st.none() | text,
    groups=st.lists(group, max_size=12).map(tuple), mfa=st.booleans(),
    claims=st.fixed_dictionaries({}, optional={"department": value, "teams": value, "project": value,
                                               "cost_center": value}))


@pytest.fixture(scope="module")
def ring(tmp_path_factory: pytest.TempPathFactory) -> KeyRing:
    d: Path = tmp_path_factory.mktemp("keys")
    generate_key(d, "ES256")
    r, problems = load_keyring(d)
    assert r is not None, problems
    return r


def aws_problems(g: Grant) -> list[str]:
    problems = tags_problems(dict(g.tags), g.transitive_keys)
    if not SESSION_NAME_RE.match(g.session_name):
        problems.append(f"session name {g.session_name!r}")
    if g.source_identity is not None and (not SESSION_NAME_RE.match(g.source_identity)
                                          or g.source_identity.lower().startswith("aws:")):
        problems.append(f"source identity {g.source_identity!r}")
    if not 900 <= g.default_duration <= g.max_duration <= 43200:
        problems.append(f"durations {g.default_duration}/{g.max_duration}")
    arn = parse_role_arn(g.role_arn)
    if arn.account_id != g.account_id or not g.provider_arn or f":{g.account_id}:" not in g.provider_arn:
        problems.append("account/provider")
    if not g.label or len(g.label) > 200:
        problems.append("label")
    return problems


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture])
@given(identity=identities, seed=st.integers())
def test_every_grant_satisfies_the_aws_limits_whatever_the_group_order(identity: Identity, seed: int,
                                                                       ring: KeyRing) -> None:
    d = decide(RULES, identity, DEFAULTS)
    for g in [*d.grants, *d.locked]:
        assert aws_problems(g) == [], g
        assert validate_assume_params(g.session_name, g.default_duration, g.max_duration) == []
        token = mint_token(g, identity, ring.active, issuer=ISSUER, audience=AUD, now=1_800_000_000)
        assert validate_jwt(token, jwks=ring.jwks(), issuer=ISSUER, audiences={AUD}, now=1_800_000_000) == []
    # withheld grants say why; nothing is silently lost
    for _, w in d.withheld:
        assert w.reason and w.code in ("mfa", "denied", "required_tag", "invalid", "limits")
        assert w.code != "limits", w.reason  # the engine never builds a grant that breaks the limits
    # the index changes nothing, and neither does the order of the groups
    full = decide(RULES, identity, DEFAULTS, explain_all=True)
    assert d.grants == full.grants and d.locked == full.locked
    groups = list(identity.groups)
    random.Random(seed).shuffle(groups)
    shuffled = Identity(**{**identity.__dict__, "groups": tuple(groups)})
    assert decide(RULES, shuffled, DEFAULTS).grants == d.grants


# --------------------------------------------------------------------------- random rules vs the index

VOCAB = ["", "a", "ab", "abc", "b", "ba", "A", "é", "1"]
PATHS = ["groups", "email", "claims.x", "claims.o.y"]
leaf = st.one_of(
    st.builds(lambda p, v: {"claim": p, "equals": v}, st.sampled_from(PATHS), st.sampled_from(VOCAB)),
    st.builds(lambda p, v: {"claim": p, "in": v}, st.sampled_from(PATHS), st.lists(st.sampled_from(VOCAB),
                                                                                     min_size=1, max_size=3)),
    st.builds(lambda p, op, v: {"claim": p, op: v}, st.sampled_from(PATHS),
              st.sampled_from(["starts_with", "ends_with", "contains", "glob"]),
              st.one_of(st.sampled_from(VOCAB + ["a*", "*b", "?", "[ab]*"]),
                        st.lists(st.sampled_from(VOCAB), min_size=1, max_size=3))),
    st.builds(lambda p, v: {"claim": p, "regex": v}, st.sampled_from(PATHS),
              st.sampled_from(["a.*", "^ab", "ab|b", "(a|b)c?", "a(?P<x>b)?", "[^a]+", "a+b", r"\w+", "é", "a?b"])),
    st.builds(lambda p, v: {"claim": p, "exists": v}, st.sampled_from(PATHS), st.booleans()),
    st.builds(lambda p, op, v: {"claim": p, op: [v] if op == "in" else v, "ignore_case": True},
              st.sampled_from(PATHS),
              st.sampled_from(["equals", "in", "starts_with", "ends_with", "contains", "glob", "regex"]),
              st.sampled_from(VOCAB + ["AB", "É", "A*"])),
    st.builds(lambda v: {"group": v}, st.sampled_from(VOCAB)),
    st.builds(lambda v: {"mfa": v}, st.booleans()),
)
condition = st.recursive(leaf, lambda inner: st.one_of(
    st.builds(lambda c: {"all": c}, st.lists(inner, min_size=1, max_size=3)),
    st.builds(lambda c: {"any": c}, st.lists(inner, min_size=1, max_size=3)),
    st.builds(lambda c: {"not": c}, inner)), max_leaves=6)
small_text = st.sampled_from(VOCAB + ["abcd", "bab", "zz", "AB", "aB", "É"])
small_identities = st.builds(
    Identity, connector_id=st.just("corp"), subject=st.just("s-1"), issuer=st.just("i"),
    email=st.none() | small_text, groups=st.lists(small_text, max_size=6).map(tuple), mfa=st.booleans(),
    claims=st.fixed_dictionaries({}, optional={"x": st.lists(small_text, max_size=3) | small_text,
                                               "o": st.fixed_dictionaries({"y": small_text})}))


def _no_duplicate_captures(c: Any) -> bool:
    names = re.findall(r"\?P<(\w+)>", repr(c))
    return len(names) == len(set(names))


# --------------------------------------------------------------------------- literal factors (regex, glob, ignore_case)

# Patterns with no literal prefix, scoped and global flags, verbose mode, alternations, repeats, lookarounds,
# and the letters re.IGNORECASE equates across scripts (ſ/s, K/k, İ/ı/i).
FACTOR_PATTERNS = [".*ab", "(a|é)b+c", "(?i)ab", "x(?i:B)c", "[ab]AB", ".*ſ", "(?i).*SK", "(?P<e>dev|prod)-ab",
                   "(?x) a b .*", "(?=a)ab", "(ab|ba)+", "a{2,}b", "(?:ab)?ba", r"\w+-ab", ".*İ.*", "(?i)kı",
                   "(?>ab)c", "a(?!b)bc|bab", "(?s:.*ab)", "(?i:k)B", "[^a]+AB", "(ab)+?c", r"\d+ab", "ab*c"]
FOLD_TEXT = ["ab", "AB", "aB", "ſ", "K", "k", "s", "S", "İ", "ı", "i", "ß", "é", "É", "x", "-", "c", "ba", "dev"]


@given(data=st.data(), pattern=st.sampled_from(FACTOR_PATTERNS), ignore_case=st.booleans())
def test_every_match_of_a_pattern_holds_its_factor(data: st.DataObject, pattern: str, ignore_case: bool) -> None:
    """What the index files a pattern under is necessary: every string the pattern fully matches
    (generated from the pattern itself, or put together from tricky letters) holds its factor."""
    from bridge.mapping.factors import fold, pattern_requirement

    rx = re.compile(pattern, re.IGNORECASE if ignore_case else 0)
    req = pattern_requirement(rx)
    candidates = [data.draw(st.from_regex(rx, fullmatch=True)),
                  "".join(data.draw(st.lists(st.sampled_from(FOLD_TEXT), max_size=6)))]
    for value in candidates:
        if rx.fullmatch(value) and req is not None:
            assert any(t in fold(value, how) for how, t in req), (pattern, value, req)


def test_the_ignore_case_fold_is_what_re_equates_with_ascii() -> None:
    """Every character re.IGNORECASE matches an ASCII literal with folds to that literal's fold (all of Unicode)."""
    from bridge.mapping.factors import ASCII_FOLD

    every = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c < 0xE000)
    for o in range(128):
        ch = chr(o)
        for other in set(re.findall(re.escape(ch), every, re.IGNORECASE)):
            assert other.translate(ASCII_FOLD) == ch.translate(ASCII_FOLD), (ch, other)


factor_leaf = st.one_of(
    st.builds(lambda p, v, ic: {"claim": p, "regex": v, "ignore_case": ic}, st.sampled_from(PATHS),
              st.sampled_from(FACTOR_PATTERNS), st.booleans()),
    st.builds(lambda p, op, v, ic: {"claim": p, op: v, "ignore_case": ic}, st.sampled_from(PATHS),
              st.sampled_from(["glob", "contains", "starts_with", "ends_with", "equals"]),
              st.sampled_from(["*ab", "*AB*", "?ſ*", "*K", "İ*", "ab", "AB", "x[ab]*", "*-ab"]), st.booleans()),
)
fold_identities = st.builds(
    Identity, connector_id=st.just("corp"), subject=st.just("s-1"), issuer=st.just("i"),
    email=st.none() | st.lists(st.sampled_from(FOLD_TEXT), max_size=4).map("".join),
    groups=st.lists(st.lists(st.sampled_from(FOLD_TEXT), max_size=4).map("".join), max_size=6).map(tuple),
    mfa=st.booleans(),
    claims=st.fixed_dictionaries({}, optional={"x": st.lists(st.sampled_from(FOLD_TEXT), max_size=3),
                                               "o": st.fixed_dictionaries({"y": st.sampled_from(FOLD_TEXT)})}))


@given(conds=st.one_of(st.lists(condition.filter(_no_duplicate_captures), min_size=1, max_size=8),
                       st.lists(st.one_of(factor_leaf, condition).filter(_no_duplicate_captures), min_size=1,
                                max_size=8)),
       identity=st.one_of(small_identities, fold_identities))
def test_the_index_and_the_factors_change_no_result(conds: list[Any], identity: Identity) -> None:
    """Random rules, through the index and the factor-narrowed values: exactly what trying every pattern on every
    value of every rule gives (the same rules, grants, captures and reasons), and what testing every rule gives."""
    from unittest import mock

    from bridge.mapping.paths import View

    doc = {"rules": [{"name": f"r{i}", "match": c,
                      "grants": [{"role_arn": f"arn:aws:iam::{ACCOUNT}:role/R{i % 3}", "tags": {f"T{i}": "v"}}]}
                     for i, c in enumerate(conds)]}
    ms = load_mapping(doc)
    fast = decide(ms, identity, DEFAULTS)
    explained = decide(ms, identity, DEFAULTS, explain_all=True)
    with mock.patch.object(View, "containing", lambda self, path, req: self.sorted_texts(path)):
        naive = decide(ms, identity, DEFAULTS, explain_all=True)
    assert [r.rule for r in fast.results] == [r.rule for r in naive.results if r.matched]
    assert [r.rule for r in fast.results] == [r.rule for r in explained.results if r.matched]
    assert fast.grants == naive.grants == explained.grants and fast.locked == naive.locked
    assert [(r.rule, r.matched, r.reason, r.grants) for r in explained.results] == \
        [(r.rule, r.matched, r.reason, r.grants) for r in naive.results]
