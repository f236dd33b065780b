"""Compiling what a rule gives or takes: grants (role, provider, session fields, tags, transitive
keys, durations) and denies — checking every constant against AWS's rules and the catalog, and
every template's captures against what the rule's match sets. Problems carry their path.

``GrantCompiler`` holds the shared state (problems, catalog, partition, a tag memo); ``compiler``
builds on it for conditions, rules and the whole mapping.
"""

from __future__ import annotations

from typing import Any

from bridge.aws.arn import RoleArn, parse_role_arn
from bridge.aws.limits import (
    MAX_DURATION,
    MAX_RULE_TAGS,
    MIN_DURATION,
    SESSION_NAME_RE,
    reserved_tag_problem,
    tag_key_problem,
    tag_value_problem,
)
from bridge.mapping.chains import compile_chain, grant_chain_problems, hub_arn
from bridge.mapping.conditions import Cond, compile_glob
from bridge.mapping.model import DenySpec, GrantSpec
from bridge.mapping.ruleset import (
    DEFAULT_ROLE_MAX,
    PROVIDER_ARN_RE,
    PROVIDER_NAME_RE,
    ROLE_NAME_RE,
    Catalog,
    CDeny,
    CGrant,
    ChainT,
    RequestPolicy,
    TagT,
)
from bridge.mapping.template import Template, template

DEFAULT_SESSION_NAME = "{email}"


def _checked_template(text: str, cond: Cond | None) -> tuple[Template | None, list[str]]:
    """Parse ``text`` and check the captures it names against what ``cond`` sets."""
    t, problems = template(text)
    if t is None or cond is None:
        return t, problems
    for name, defaulted in t.captures.items():
        if name not in cond.possible:
            have = ", ".join(sorted(cond.possible)) or "none"
            problems.append(f"{{match.{name}}}: the match sets no capture {name!r} (captures: {have}); "
                            "name one with (?P<name>…) in a regex")
        elif name not in cond.guaranteed and not defaulted:
            problems.append(f"{{match.{name}}}: not every way the match can hold sets {name!r} "
                            "(an any branch or an optional group); add |default(…)")
    return t, problems



class GrantCompiler:
    """Grants and denies of one mapping; ``problems`` collects what is wrong (``path: message``)."""

    def __init__(self, partition: str) -> None:
        self.partition = partition
        self.problems: list[str] = []
        self.catalog = Catalog()
        self._tag_memo: dict[Any, tuple[Template | None, Template | None, list[str]]] = {}
        self.rule_name = ""  # the rule being compiled (set by the compiler), for messages that name it

    def problem(self, where: str, msg: str) -> None:
        self.problems.append(f"{where}: {msg}")

    def account_partition(self, account_id: str) -> str:
        acct = self.catalog.by_id.get(account_id)
        return (acct.partition if acct else None) or self.partition

    def tmpl(self, text: str | None, where: str, cond: Cond | None) -> Template | None:
        if text is None:
            return None
        t, problems = _checked_template(text, cond)
        for p in problems:
            self.problem(where, p)
        return t

    # ------------------------------------------------------------ one grant

    def grant(self, g: GrantSpec, where: str, cond: Cond | None) -> CGrant | None:
        n = len(self.problems)
        role_arn, account, role, static = self.role(g, where, cond)
        provider = self.provider(g, where, cond)
        label = self.tmpl(g.label, f"{where}.label", cond)
        session, source = self.session_fields(g, where, cond)
        tags = self.tags(g, where, cond)
        transitive = self.transitive(g, where, cond, tags)
        self.durations(g, where, static)
        request = self.request(g, where)
        chain = self.chain(g, where, cond, static)
        if len(self.problems) > n or session is None or tags is None:
            return None
        return CGrant(where, role_arn, account, role, static, provider, label, session, source, tags, transitive,
                      g.duration_default, g.duration_max, g.mfa_required, g.path, g.audience, g.console, request,
                      chain)

    def chain(self, g: GrantSpec, where: str, cond: Cond | None, static: RoleArn | None) -> ChainT:
        """``via``, ExternalId and session policies (bridge/mapping/chains.py), and what they rule out."""
        via = None
        if g.via is not None:
            hub = hub_arn(g.via, self.catalog, self.partition)
            if isinstance(hub, str):
                self.problem(f"{where}.via", hub)
            else:
                via = hub
        chain = compile_chain(g, via, where, lambda text, at: self.tmpl(text, at, cond), self.problem, catalog=False)
        for name, msg in grant_chain_problems(chain, static, self.catalog.role(static) if static else None,
                                              self.catalog, path=g.path, console=g.console,
                                              durations=(g.duration_default, g.duration_max)):
            self.problem(f"{where}.{name}", msg)
        return chain

    def request(self, g: GrantSpec, where: str) -> RequestPolicy | None:
        """``request:``: the approvers' condition compiled like a match (no captures: they would come
        from the approver, not the requester)."""
        if g.request is None:
            return None
        at = f"{where}.request"
        cond = self.cond(g.request.approvers, f"{at}.approvers")  # type: ignore[attr-defined]
        if cond is None:
            return None
        if g.path == "passthrough":
            self.problem(f"{at}", "a path: passthrough grant cannot be requested (it redeems the sign-in's own "
                                  "token, which is gone by the time a request is approved)")
        return RequestPolicy(cond, g.request.max_duration, g.request.reason_required, g.request.break_glass)

    # ------------------------------------------------------------ the role

    def role(self, g: GrantSpec, where: str, cond: Cond | None) -> tuple[Template | None, Template | None,
                                                                          Template | None, RoleArn | None]:
        """The role's templates (role_arn, or account and role) and its ARN when that is constant."""
        role_arn = self.tmpl(g.role_arn, f"{where}.role_arn", cond)
        account = self.tmpl(g.account, f"{where}.account", cond)
        role = self.tmpl(g.role, f"{where}.role", cond)
        static = self.static_arn(role_arn, where)
        acct_id = self.constant_account(account, where)
        if role is not None and role.constant is not None and not ROLE_NAME_RE.match(role.constant):
            self.problem(f"{where}.role", f"{role.constant!r} is not a role name ([path/]name, name [\\w+=,.@-])")
        elif acct_id and role is not None and role.constant is not None:
            static = parse_role_arn(f"arn:{self.account_partition(acct_id)}:iam::{acct_id}:role/{role.constant}")
        return role_arn, account, role, static

    def static_arn(self, role_arn: Template | None, where: str) -> RoleArn | None:
        """A constant ``role_arn``, parsed and checked against its account's partition."""
        if role_arn is None or role_arn.constant is None:
            return None
        try:
            static = parse_role_arn(role_arn.constant)
        except ValueError as e:
            self.problem(f"{where}.role_arn", str(e))
            return None
        want = self.account_partition(static.account_id)
        if static.partition != want:
            self.problem(f"{where}.role_arn", f"not in the configured partition {want}")
        return static

    def constant_account(self, account: Template | None, where: str) -> str | None:
        """The id of a constant ``account`` (an id, or an alias in the catalog)."""
        if account is None or account.constant is None:
            return None
        acct_id = self.catalog.account_id(account.constant)
        if acct_id is None:
            self.problem(f"{where}.account", f"{account.constant!r} is neither a 12-digit account id nor an "
                                             "alias in the accounts catalog")
        return acct_id

    # ------------------------------------------------------------ provider and session fields

    def provider(self, g: GrantSpec, where: str, cond: Cond | None) -> Template | None:
        provider = self.tmpl(g.provider, f"{where}.provider", cond)
        if provider is not None and provider.constant is not None:
            p = provider.constant
            if not (PROVIDER_ARN_RE.match(p) if p.startswith("arn:") else PROVIDER_NAME_RE.match(p)):
                self.problem(f"{where}.provider", f"{p!r} is neither a SAML provider name ([\\w.-]{{1,128}}) nor "
                                                  "its ARN")
        return provider

    def session_fields(self, g: GrantSpec, where: str, cond: Cond | None) -> tuple[Template | None,
                                                                                    Template | None]:
        """Session name (``{email}`` unless given) and source identity."""
        session = self.tmpl(g.session_name or DEFAULT_SESSION_NAME, f"{where}.session_name", cond)
        source = self.tmpl(g.source_identity, f"{where}.source_identity", cond)
        for field_name, t in (("session_name", session), ("source_identity", source)):
            if t is not None and t.constant is not None and not SESSION_NAME_RE.match(t.constant):
                self.problem(f"{where}.{field_name}", f"{t.constant!r} is not allowed by AWS "
                                                      "([\\w+=,.@-]{2,64})")
        return session, source

    # ------------------------------------------------------------ tags

    def tag(self, key_text: str, value_text: str, cond: Cond | None) -> tuple[Template | None, Template | None,
                                                                              list[str]]:
        """One tag's templates and problems (memoized: thousands of rules repeat the same tags)."""
        memo_key = (key_text, value_text, cond.possible if cond else None, cond.guaranteed if cond else None)
        hit = self._tag_memo.get(memo_key)
        if hit is not None:
            return hit
        key, problems = _checked_template(key_text, cond)
        value, more = _checked_template(value_text, cond)
        problems += more
        key_problem = tag_key_problem(key.constant) if key is not None and key.constant is not None else None
        value_problem = tag_value_problem(value.constant) if value is not None and value.constant is not None else None
        problems += [p for p in (key_problem or value_problem,) if p]
        result = (key, value, problems)
        self._tag_memo[memo_key] = result
        return result

    def tags(self, g: GrantSpec, where: str, cond: Cond | None) -> list[TagT] | None:
        out: list[TagT] = []
        ok = True
        if len(g.tags) > MAX_RULE_TAGS:
            self.problem(f"{where}.tags", f"{len(g.tags)} tags; a rule may send at most {MAX_RULE_TAGS} (AWS "
                                          f"allows {MAX_RULE_TAGS + 1} per session; the bridge sends bridge:mfa)")
        lower: dict[str, str] = {}
        for key_text, spec in g.tags.items():
            at = f"{where}.tags.{key_text}"
            value_text, required = (spec, False) if isinstance(spec, str) else (spec.value, spec.required)
            key, value, problems = self.tag(key_text, value_text, cond)
            if key is not None and key.constant is not None and (reserved := reserved_tag_problem(key.constant)):
                problems = [*problems, f"rule {self.rule_name!r}: {reserved}"]
            for p in problems:
                self.problem(at, p)
            if key is None or value is None or problems:
                ok = False
                continue
            if key.constant is not None:
                if key.constant.lower() in lower:
                    self.problem(at, f"tag keys {lower[key.constant.lower()]!r} and {key.constant!r} differ only "
                                     "in case (AWS keys are case-insensitive)")
                lower[key.constant.lower()] = key.constant
            out.append(TagT(key, value, required, at))
        return out if ok else None

    def transitive(self, g: GrantSpec, where: str, cond: Cond | None, tags: list[TagT] | None) -> list[Template]:
        """Transitive tag keys; constant ones must be among constant session tag keys."""
        parsed = [self.tmpl(k, f"{where}.transitive_tags[{i}]", cond) for i, k in enumerate(g.transitive_tags)]
        transitive = [t for t in parsed if t is not None]
        if len(g.transitive_tags) > MAX_RULE_TAGS:
            self.problem(f"{where}.transitive_tags", f"{len(g.transitive_tags)} keys; a rule may name at "
                                                     f"most {MAX_RULE_TAGS} (the bridge's bridge:mfa is one of AWS's "
                                                     f"{MAX_RULE_TAGS + 1})")
        if tags is not None and all(t.key.constant is not None for t in tags):
            keys = {t.key.constant.lower() for t in tags if t.key.constant is not None}
            for i, t in enumerate(parsed):
                if t is not None and t.constant is not None and t.constant.lower() not in keys:
                    self.problem(f"{where}.transitive_tags[{i}]", f"transitive tag key {t.constant!r} is not one "
                                                                  "of the session tags")
        return transitive

    # ------------------------------------------------------------ durations

    def durations(self, g: GrantSpec, where: str, static: RoleArn | None) -> None:
        d, m = g.duration_default, g.duration_max
        at = f"{where}.duration"
        for what, v in (("default", d), ("max", m)):
            if v is not None and not MIN_DURATION <= v <= MAX_DURATION:
                self.problem(at, f"{what} {v}s is outside AWS's {MIN_DURATION}..{MAX_DURATION} seconds")
                return
        role = self.catalog.role(static) if static else None
        if role is not None and m is not None and m > role.max_session_duration:
            self.problem(at, f"max {m}s is above the role's max_session_duration {role.max_session_duration}s "
                             "(accounts catalog); AWS would refuse it")
        effective_max = m or (role.max_session_duration if role else DEFAULT_ROLE_MAX)
        if d is not None and d > effective_max:
            hint = "" if m else " (set duration.max, or declare the role's max_session_duration in the catalog)"
            self.problem(at, f"default {d}s is above the max {effective_max}s{hint}")

    # ------------------------------------------------------------ deny

    def deny(self, spec: DenySpec, where: str) -> CDeny | None:
        if spec.all:
            return CDeny(True, frozenset(), ())
        accounts = set()
        for i, ref in enumerate(spec.accounts):
            acct = self.catalog.account_id(ref)
            if acct is None:
                self.problem(f"{where}.deny.accounts[{i}]", f"{ref!r} is neither a 12-digit account id nor an alias "
                                                           "in the accounts catalog")
            else:
                accounts.add(acct)
        roles = tuple((p, compile_glob(p), p.startswith("arn:")) for p in spec.roles)
        return CDeny(False, frozenset(accounts), roles)
