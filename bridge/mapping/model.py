"""The minimal rules model (issue 2). Rules are data: YAML validated with ``extra="forbid"``.

A rule matches an identity by one ``group`` or one ``claim`` + ``equals``, and grants one
role. Tags map a tag key to a claim path. The full rules engine replaces this module behind
the same seam (``bridge.mapping.evaluate``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bridge.aws.arn import parse_role_arn
from bridge.aws.limits import MAX_DURATION, MIN_DURATION, tags_problems

CLAIM_ROOTS = ("subject", "email", "name", "groups", "issuer", "connector_id", "claims")


def _check_claim_path(path: str) -> str:
    root, dot, rest = path.partition(".")
    nested_ok = root == "claims" and rest and all(rest.split("."))
    if root not in CLAIM_ROOTS or (root == "claims" and not nested_ok) or (root != "claims" and dot):
        raise ValueError(f"{path!r} is not a claim path; use one of {', '.join(CLAIM_ROOTS[:-1])} "
                         "or claims.<name>")
    return path


class Rule(BaseModel):
    """One mapping rule: who (``group`` or ``claim``/``equals``) gets which role, with which tags."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    description: str = ""
    connectors: list[str] | None = None
    group: str | None = None
    claim: str | None = None
    equals: str | None = None
    role_arn: str
    label: str | None = None
    session_name_from: str = "email"
    source_identity_from: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    transitive_tags: list[str] = Field(default_factory=list)
    duration: int = 3600
    max_duration: int = 3600
    mfa_required: bool = False
    audience: str | None = None
    path: Literal["jwt", "saml", "passthrough"] | None = None
    saml_provider: str | None = Field(None, pattern=r"^[\w._-]{1,128}$")

    @field_validator("role_arn")
    @classmethod
    def _arn(cls, v: str) -> str:
        parse_role_arn(v)
        return v

    @field_validator("claim", "session_name_from", "source_identity_from")
    @classmethod
    def _paths(cls, v: str | None) -> str | None:
        return None if v is None else _check_claim_path(v)

    @field_validator("tags")
    @classmethod
    def _tag_paths(cls, v: dict[str, str]) -> dict[str, str]:
        for path in v.values():
            _check_claim_path(path)
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Rule:
        problems: list[str] = []
        if (self.group is None) == (self.claim is None):
            problems.append("set exactly one of 'group' or 'claim' (with 'equals')")
        if self.claim is not None and self.equals is None:
            problems.append("'claim' needs 'equals'")
        if self.claim is None and self.equals is not None:
            problems.append("'equals' goes with 'claim', not with 'group'")
        if not MIN_DURATION <= self.max_duration <= MAX_DURATION:
            problems.append(f"max_duration must be {MIN_DURATION}..{MAX_DURATION} seconds (the role's own "
                            "MaxSessionDuration is 3600..43200)")
        if not MIN_DURATION <= self.duration <= self.max_duration:
            problems.append(f"duration {self.duration} must be between {MIN_DURATION} and max_duration "
                            f"{self.max_duration}")
        # Values come from claims at login; keys and the transitive subset can be checked now.
        problems += [p for p in tags_problems(dict.fromkeys(self.tags, ""), self.transitive_tags)]
        if problems:
            raise ValueError("; ".join(problems))
        return self


class MappingSettings(BaseModel):
    """``mapping:`` section: the ordered rule list. First rule granting a role wins."""

    model_config = ConfigDict(extra="forbid")

    rules: list[Rule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> MappingSettings:
        names = [r.name for r in self.rules]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"rule names must be unique; repeated: {', '.join(dupes)}")
        return self
