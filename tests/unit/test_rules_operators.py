"""Each match operator, each template filter, paths and template syntax — with unicode, empty and huge values."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.domain.identity import Identity
from bridge.mapping import evaluate, explain, load_mapping
from bridge.mapping.conditions import MAX_MATCH_LEN, literal_prefix
from bridge.mapping.paths import View, parse_path, resolve
from bridge.mapping.template import Missing, parse_template

ROLE = "arn:aws:iam::123456789012:role/R"
HUGE = "x" * 100_000


def ident(**kw: Any) -> Identity:
    base: dict[str, Any] = {"connector_id": "corp", "subject": "s-1", "issuer": "https://idp", "email": "a@b.example",
                            "groups": (), "claims": {}}
    base.update(kw)
    return Identity(**base)


def holds(match: Any, identity: Identity) -> bool:
    ms = load_mapping({"rules": [{"name": "r", "match": match, "grants": [{"role_arn": ROLE}]}]})
    fast = bool(evaluate(ms, identity, default_audience="a"))
    (full,) = explain(ms, identity, default_audience="a")
    assert full.matched == fast, "the index and full evaluation disagree"
    return fast


def reason(match: Any, identity: Identity) -> str:
    ms = load_mapping({"rules": [{"name": "r", "match": match, "grants": [{"role_arn": ROLE}]}]})
    (r,) = explain(ms, identity, default_audience="a")
    return str(r.reason)


# --------------------------------------------------------------------------- operators


@pytest.mark.parametrize(("operand", "values", "want"), [
    ("Ingeniería", ["Ingeniería"], True),
    ("Ingeniería", ["Ingenieria"], False),          # no accent folding in matching
    ("Ingenier\u00eda", ["Ingenieri\u0301a"], False),  # NFC vs NFD spellings are different strings
    ("", [""], True),
    ("", [], False),
    (HUGE, [HUGE], True),
    (HUGE, [HUGE[:-1]], False),
    ("日本", ["x", "日本"], True),
])
def test_equals(operand: str, values: list[str], want: bool) -> None:
    assert holds({"claim": "claims.v", "equals": operand}, ident(claims={"v": values})) is want


def test_equals_on_numbers_booleans_and_objects() -> None:
    assert holds({"claim": "claims.n", "equals": 12}, ident(claims={"n": 12}))
    assert holds({"claim": "claims.n", "equals": "12"}, ident(claims={"n": 12}))
    assert holds({"claim": "claims.b", "equals": False}, ident(claims={"b": False}))
    assert not holds({"claim": "claims.o", "equals": "{}"}, ident(claims={"o": {}}))  # objects have no text
    assert holds({"claim": "claims.f", "equals": 1.5}, ident(claims={"f": 1.5}))


@pytest.mark.parametrize(("operand", "values", "want"), [
    (["a", "b"], ["b"], True), (["a", "b"], ["c"], False), (["ü"], ["ü", "x"], True), ([""], [""], True),
    ([HUGE, "z"], [HUGE], True), ([1, True], ["1"], True), ([1, True], ["true"], True),
])
def test_in(operand: list[Any], values: list[str], want: bool) -> None:
    assert holds({"claim": "claims.v", "in": operand}, ident(claims={"v": values})) is want


@pytest.mark.parametrize(("operand", "values", "want"), [
    ("dev", ["team-dev-1"], True), ("dev", ["team"], False), (["x", "ops"], ["devops"], True),
    ("ß", ["straße"], True), ("", ["anything"], True), ("", [], False), ("x", [HUGE], True),
])
def test_contains(operand: Any, values: list[str], want: bool) -> None:
    assert holds({"claim": "claims.v", "contains": operand}, ident(claims={"v": values})) is want


@pytest.mark.parametrize(("operand", "values", "want"), [
    ("team-", ["team-a"], True), ("team-", ["xteam-a"], False), (["a", "Ω"], ["Ωmega"], True),
    ("", ["x"], True), ("", [], False), ("x", [HUGE], True), (HUGE, [HUGE + "y"], True),
])
def test_starts_with(operand: Any, values: list[str], want: bool) -> None:
    assert holds({"claim": "claims.v", "starts_with": operand}, ident(claims={"v": values})) is want


@pytest.mark.parametrize(("operand", "email", "want"), [
    ("@example.com", "a@example.com", True), ("@example.com", "a@example.com.evil", False),
    (["@a.com", "@b.com"], "x@b.com", True), ("@ünï.de", "x@ünï.de", True), ("", "x", True),
    ("x", HUGE, True),
])
def test_ends_with(operand: Any, email: str, want: bool) -> None:
    assert holds({"claim": "email", "ends_with": operand}, ident(email=email)) is want


def test_ends_with_a_missing_claim() -> None:
    assert not holds({"claim": "email", "ends_with": "@x"}, ident(email=None))
    assert reason({"claim": "email", "ends_with": "@x"}, ident(email=None)) == \
        "email is missing; nothing ends with '@x'"


@pytest.mark.parametrize(("pattern", "values", "want"), [
    (r"aws#\d{12}#\w+", ["aws#123456789012#Admin"], True),
    (r"aws#\d{12}#\w+", ["aws#123456789012#Admin-extra"], False),   # a full match, not a search
    (r"aws#\d{12}#\w+", ["xaws#123456789012#Admin"], False),
    (r"^team-(dev|prod)$", ["team-prod"], True),                   # ^ and $ are allowed (and redundant)
    (r"équipe-.+", ["équipe-α"], True),
    (r"", [""], True),
    (r".*", [], False),
    (r"x+", [HUGE], False),                                          # longer than MAX_MATCH_LEN: not tried
    (r"x+", ["x" * MAX_MATCH_LEN], True),
    (r"(?i)ADMIN", ["admin"], True),
    (r"a|b", ["b"], True),
])
def test_regex(pattern: str, values: list[str], want: bool) -> None:
    assert holds({"claim": "claims.v", "regex": pattern}, ident(claims={"v": values})) is want


def test_regex_reason_says_long_values_are_not_tried() -> None:
    assert "values over 1024 characters are not tried" in reason({"claim": "claims.v", "regex": "x+"},
                                                                 ident(claims={"v": [HUGE]}))


@pytest.mark.parametrize(("pattern", "values", "want"), [
    ("ops-*", ["ops-blue"], True), ("ops-*", ["xops-blue"], False), ("ops-?", ["ops-1"], True),
    ("ops-[ab]", ["ops-b"], True), ("ops-[ab]", ["ops-c"], False), (["a*", "*z"], ["quiz"], True),
    ("*", [""], True), ("dév-*", ["dév-ü"], True), ("*", [HUGE], False), ("x*\n", ["x\n"], True),
])
def test_glob(pattern: Any, values: list[str], want: bool) -> None:
    assert holds({"claim": "claims.v", "glob": pattern}, ident(claims={"v": values})) is want


@pytest.mark.parametrize(("claims", "exists", "want"), [
    ({"v": "x"}, True, True), ({"v": ""}, True, True), ({"v": None}, True, False), ({}, True, False),
    ({"v": []}, True, False), ({"v": {"a": 1}}, True, True), ({}, False, True), ({"v": "x"}, False, False),
])
def test_exists(claims: dict[str, Any], exists: bool, want: bool) -> None:
    assert holds({"claim": "claims.v", "exists": exists}, ident(claims=claims)) is want


def test_mfa_and_group() -> None:
    assert holds({"mfa": True}, ident(mfa=True)) and not holds({"mfa": True}, ident(mfa=False))
    assert holds({"mfa": False}, ident(mfa=False))
    assert holds({"group": "Ωmega admins"}, ident(groups=("x", "Ωmega admins")))
    assert not holds({"group": "admins"}, ident(groups=("Admins",)))  # case matters
    big = tuple(f"g{i}" for i in range(5000))
    assert holds({"group": "g4999"}, ident(groups=big))
    assert reason({"group": "nope"}, ident(groups=big)).endswith("… (+4990 more)])")


def test_combinators() -> None:
    i = ident(groups=("a", "b"), mfa=False)
    assert holds({"all": [{"group": "a"}, {"group": "b"}]}, i)
    assert not holds({"all": [{"group": "a"}, {"group": "c"}]}, i)
    assert holds({"any": [{"group": "c"}, {"group": "b"}]}, i)
    assert not holds({"any": [{"group": "c"}, {"mfa": True}]}, i)
    assert holds({"not": {"group": "c"}}, i) and not holds({"not": {"group": "a"}}, i)
    assert holds({"not": {"not": {"group": "a"}}}, i)
    assert holds({"all": [{"any": [{"group": "x"}, {"all": [{"group": "a"}, {"not": {"mfa": True}}]}]}]}, i)


def test_captures_from_every_matching_value_and_combined_across_all() -> None:
    ms = load_mapping({"rules": [{"name": "r", "match": {"all": [
        {"claim": "groups", "regex": r"acct-(?P<account>\d{12})"},
        {"claim": "claims.roles", "regex": r"role-(?P<role>\w+)"}]},
        "grants": [{"role_arn": "arn:aws:iam::{match.account}:role/{match.role}"}]}]})
    i = ident(groups=("acct-111111111111", "acct-222222222222", "other"), claims={"roles": ["role-A", "role-B"]})
    got = [g.role_arn for g in evaluate(ms, i, default_audience="a")]
    assert got == [f"arn:aws:iam::{a}:role/{r}" for a in ("111111111111", "222222222222") for r in ("A", "B")]


def test_any_branches_each_contribute_their_captures() -> None:
    ms = load_mapping({"rules": [{"name": "r", "match": {"any": [
        {"claim": "groups", "regex": r"a-(?P<role>\w+)"}, {"claim": "groups", "regex": r"b-(?P<role>\w+)"}]},
        "grants": [{"role_arn": "arn:aws:iam::123456789012:role/{match.role}"}]}]})
    got = [g.role_name for g in evaluate(ms, ident(groups=("b-Two", "a-One")), default_audience="a")]
    assert got == ["One", "Two"]


# --------------------------------------------------------------------------- filters


def render(text: str, **kw: Any) -> str | Missing:
    t, problems = parse_template(text)
    assert t is not None, problems
    return t.render(View(ident(**kw)), kw.pop("binding", {}) if "binding" in kw else {})


@pytest.mark.parametrize(("template", "claims", "want"), [
    ("{claims.v|lower}", {"v": "ÀBC"}, "àbc"),
    ("{claims.v|upper}", {"v": "straße"}, "STRASSE"),
    ("{claims.v|lower}", {"v": ""}, ""),
    ("{claims.v|local_part}", {"v": "first.last@example.com"}, "first.last"),
    ("{claims.v|local_part}", {"v": "a@b@example.com"}, "a@b"),
    ("{claims.v|local_part}", {"v": "no-at-sign"}, "no-at-sign"),
    ("{claims.v|domain}", {"v": "x@Example.COM"}, "Example.COM"),
    ("{claims.v|domain|default(none)}", {"v": "no-at-sign"}, "none"),
    ("{claims.v|slug}", {"v": "  Équipe Données & IA!! "}, "equipe-donnees-ia"),
    ("{claims.v|slug}", {"v": "日本"}, ""),
    ("{claims.v|truncate(3)}", {"v": "abcdef"}, "abc"),
    ("{claims.v|truncate(10)}", {"v": "abc"}, "abc"),
    ("{claims.v|truncate(2)}", {"v": "ñandú"}, "ña"),
    ("{claims.v|first}", {"v": ["b", "a"]}, "b"),
    ("{claims.v|join}", {"v": ["b", "a"]}, "b:a"),
    ("{claims.v|join(', ')}", {"v": ["b", "a"]}, "b, a"),
    ("{claims.v|join(-)}", {"v": ["b", "a"]}, "b-a"),
    ("{claims.v|join(' | ')}", {"v": ["b", "a"]}, "b | a"),
    ("{claims.v|default(n/a)}", {}, "n/a"),
    ("{claims.v|default(n/a)}", {"v": ""}, "n/a"),
    ("{claims.v|default('a, b')}", {}, "a, b"),
    ("{claims.v|default()}", {}, ""),
    ("{claims.v|default(x)}", {"v": "set"}, "set"),
    ("{claims.v|lower|truncate(3)|upper}", {"v": "Hello"}, "HEL"),
    ("{claims.v|truncate(10000)}", {"v": HUGE}, "x" * 10000),
    ("{{literal}} {claims.v}", {"v": "x"}, "{literal} x"),
    ("no placeholders", {}, "no placeholders"),
    ("", {}, ""),
])
def test_filters(template: str, claims: dict[str, Any], want: str) -> None:
    assert render(template, claims=claims) == want


def test_missing_and_multi_valued_placeholders_say_why() -> None:
    assert render("x-{claims.v}", claims={}) == Missing("{claims.v} has no value")
    assert render("x-{claims.v}", claims={"v": ["a", "b"]}) == Missing("{claims.v} has 2 values (use |first or |join)")
    assert render("{claims.v|first}", claims={"v": []}) == Missing("{claims.v|first} has no value")


def test_captures_render_from_the_binding() -> None:
    t, _ = parse_template("arn:aws:iam::{match.account}:role/{match.role|default(ReadOnly)}")
    assert t is not None and t.captures == {"account": False, "role": True} and t.uses_match
    assert t.render(View(ident()), {"account": "123"}) == "arn:aws:iam::123:role/ReadOnly"
    assert t.render(View(ident()), {}) == Missing("{match.account} has no value")


@pytest.mark.parametrize(("text", "problem"), [
    ("{claims.x|bogus}", "unknown filter 'bogus'"),
    ("{claims.x|truncate}", "filter 'truncate' takes 1 argument(s), got 0"),
    ("{claims.x|truncate(a)}", "truncate(a) needs a whole number 1..10000"),
    ("{claims.x|truncate(0)}", "truncate(0) needs a whole number 1..10000"),
    ("{claims.x|lower(1)}", "filter 'lower' takes 0 argument(s), got 1"),
    ("{claims.x|join(a,b)}", "filter 'join' takes 0 or 1 argument(s), got 2"),
    ("{claims.x|default}", "filter 'default' takes 1 argument(s), got 0"),
    ("{claims.x|9x}", "'9x' is not a filter"),
    ("{dept}", "'dept' is not a claim path"),
    ("{claims}", "'claims' is not a claim path"),
    ("{email.domain}", "email has no parts"),
    ("{match}", "write match.<capture name>"),
    ("{match.a.b}", "write match.<capture name>"),
    ("{claims.x", "unclosed '{'"),
    ("x}", "unmatched '}'"),
])
def test_template_problems(text: str, problem: str) -> None:
    t, problems = parse_template(text)
    assert t is None and any(problem in p for p in problems), problems


def test_every_problem_of_a_template_is_listed() -> None:
    _, problems = parse_template("{claims.x|bogus|truncate(z)} {nope}")
    assert len(problems) == 3


# --------------------------------------------------------------------------- paths


@pytest.mark.parametrize(("text", "root", "keys"), [
    ("email", "email", ()), ("groups[]", "groups", ()), ("connector", "connector_id", ()),
    ("claims.org.teams[]", "claims", ("org", "teams")), ('claims["https://x.example/roles"]', "claims",
                                                          ("https://x.example/roles",)),
    ("claims['a.b'].c", "claims", ("a.b", "c")), ("claims.ünïcode", "claims", ("ünïcode",)),
])
def test_paths(text: str, root: str, keys: tuple[str, ...]) -> None:
    p = parse_path(text)
    assert (p.root, p.keys) == (root, keys)


def test_path_resolution_searches_lists_and_drops_nulls() -> None:
    i = ident(claims={"orgs": [{"teams": ["a", None, ["b"]]}, {"teams": "c"}, "junk", {"x": 1}],
                      "https://x.example/roles": ["r1"]})
    assert resolve(i, parse_path("claims.orgs[].teams[]")) == ["a", "b", "c"]
    assert resolve(i, parse_path('claims["https://x.example/roles"]')) == ["r1"]
    assert resolve(i, parse_path("claims.orgs.absent")) == []
    assert resolve(i, parse_path("mfa")) == [False]


def test_deeply_nested_lists_do_not_recurse_forever() -> None:
    v: Any = "deep"
    for _ in range(100):
        v = [v]
    assert resolve(ident(claims={"v": v}), parse_path("claims.v")) == []


@pytest.mark.parametrize(("pattern", "prefix"), [
    (r"aws#(?P<a>\d{12})#x", "aws#"), (r"team-1-(dev|prod)", "team-1-"), (r"a|b", ""), (r"(?i)abc", ""),
    (r"^abc", "abc"), (r"ab*c", "a"), (r"ab?", "a"), (r"ab{2}", "a"), (r"ab+", "ab"), (r"a\.b\d", "a.b"),
    (r"[ab]c", ""), (r"x[|]y", "x"), (r"x\|y|z", ""), (r"(a|b)c", ""), (r"", ""),
])
def test_literal_prefix(pattern: str, prefix: str) -> None:
    assert literal_prefix(pattern) == prefix


# --------------------------------------------------------------------------- ignore_case


@pytest.mark.parametrize(("cond", "values", "want"), [
    ({"ends_with": "@contractor.example.com"}, ["Dave@Contractor.Example.com"], True),
    ({"ends_with": ["@x.example", "@CONTRACTOR.example.com"]}, ["dave@contractor.EXAMPLE.com"], True),
    ({"ends_with": "@contractor.example.com"}, ["dave@example.com"], False),
    ({"starts_with": "DAVE@"}, ["dave@x"], True),
    ({"starts_with": "DAVE@"}, ["xdave@x"], False),
    ({"equals": "Dave@X.example"}, ["dAVE@x.EXAMPLE"], True),
    ({"equals": "Dave@X.example"}, ["dave@x.example.evil"], False),
    ({"in": ["a@b", "Dave@X"]}, ["dave@x"], True),
    ({"in": [True]}, [True], True),
    ({"contains": "CONTRACTOR"}, ["d@contractor.example"], True),
    ({"regex": r"[a-z]+@contractor\.example\.com"}, ["Dave@Contractor.Example.com"], True),
    ({"regex": r"(?P<who>[a-z]+)@contractor\.example\.com"}, ["Dave@other.example.com"], False),
    ({"glob": "*@contractor.example.com"}, ["Dave@CONTRACTOR.example.com"], True),
    ({"glob": ["team-*", "*@contractor.example.com"]}, ["Dave@other.example.com"], False),
    ({"ends_with": "STRASSE"}, ["Straße"], True),                     # Unicode case folding (ß → ss)
])
def test_ignore_case(cond: dict[str, Any], values: list[Any], want: bool) -> None:
    assert holds({"claim": "claims.v", **cond, "ignore_case": True}, ident(claims={"v": values})) is want


def test_string_operators_stay_case_sensitive_without_ignore_case() -> None:
    v = ident(claims={"v": ["Dave@Contractor.Example.com"]})
    for op, operand in (("ends_with", "@contractor.example.com"), ("equals", "dave@contractor.example.com"),
                        ("glob", "*@contractor.example.com"), ("starts_with", "dave")):
        assert not holds({"claim": "claims.v", op: operand}, v), op
        assert not holds({"claim": "claims.v", op: operand, "ignore_case": False}, v), op


def test_ignore_case_reasons_say_so() -> None:
    v = ident(claims={"v": ["Dave@Contractor.Example.com"]})
    assert reason({"claim": "claims.v", "ends_with": "@contractor.example.com", "ignore_case": True}, v) == \
        "claims.v 'Dave@Contractor.Example.com' ends with '@contractor.example.com' (ignoring case)"
    assert reason({"claim": "claims.v", "equals": "x", "ignore_case": True}, v) == \
        "claims.v is 'Dave@Contractor.Example.com', not 'x' (ignoring case)"
    assert reason({"claim": "claims.v", "glob": "*@CONTRACTOR.example.com", "ignore_case": True}, v).endswith(
        "matches glob '*@CONTRACTOR.example.com' (ignoring case)")


def test_ignore_case_conditions_are_indexed_under_their_folded_text() -> None:
    """A case-insensitive leaf is filed under its folded operand (never one spelling of it), so the index
    finds every spelling; an ``all`` with an exact sibling is still filed under the sibling."""
    from bridge.mapping.conditions import Leaf

    ms = load_mapping({"rules": [
        {"name": "ci", "match": {"claim": "email", "ends_with": "@X.example", "ignore_case": True},
         "grants": [{"role_arn": ROLE}]},
        {"name": "both", "match": {"all": [{"group": "g"}, {"claim": "email", "equals": "A@x.example",
                                                             "ignore_case": True}]},
         "grants": [{"role_arn": ROLE}]},
        {"name": "eq", "match": {"claim": "email", "equals": "Bob@X.example", "ignore_case": True},
         "grants": [{"role_arn": ROLE}]}]})
    ci, both, eq = ms.compiled.rules
    assert isinstance(ci.cond, Leaf) and ci.cond.keys == frozenset({("~f", "email", "@x.example")})
    assert both.cond.keys == frozenset({("=", "groups", "g")})
    assert eq.cond.keys == frozenset({("=f", "email", "bob@x.example")})
    assert ms.compiled.unindexed == []
    for email, matched in (("a@x.example", ["ci"]), ("A@X.EXAMPLE", ["ci"]), ("BOB@x.Example", ["ci", "eq"]),
                           ("bob@y.example", [])):
        got = evaluate(ms, ident(email=email), default_audience="sts.amazonaws.com")
        assert [g.via for g in got] == matched[:1], email  # one role: the first rule owns it
        assert [r.rule for r in explain(ms, ident(email=email), default_audience="x") if r.matched] == matched
    assert holds({"claim": "email", "ends_with": "@X.example", "ignore_case": True}, ident(email="a@x.example"))
    assert holds({"all": [{"group": "g"}, {"claim": "email", "equals": "A@x.example", "ignore_case": True}]},
                 ident(email="a@X.example", groups=("g",)))
