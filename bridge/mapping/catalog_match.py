"""Which catalog accounts a grant's ``where:`` picks (docs/rules.md "One role in every account of an OU").

``account.ou: Root/Workloads`` holds for an account whose ``ou`` is that OU path or one below it;
``account.tags.<key>: value`` for one whose tag ``<key>`` is that value. A list means any of its values;
every key of ``where`` must hold. Pure: the catalog in, account ids (in id order) out.
"""

from __future__ import annotations

from collections.abc import Mapping

from bridge.mapping.model import AccountEntry

TAGS = "account.tags."


def _wanted(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _in_ou(ou: str | None, want: str) -> bool:
    if ou is None:
        return False
    have, path = ou.strip("/"), want.strip("/")
    return have == path or have.startswith(path + "/")


def matches(entry: AccountEntry, where: Mapping[str, str | list[str]]) -> bool:
    """Whether the catalog ``entry`` satisfies every condition of ``where``."""
    for key, value in where.items():
        wanted = _wanted(value)
        if key == "account.ou":
            if not any(_in_ou(entry.ou, w) for w in wanted):
                return False
        elif entry.tags.get(key.removeprefix(TAGS)) not in wanted:
            return False
    return True


def picked_accounts(accounts: Mapping[str, AccountEntry], where: Mapping[str, str | list[str]]) -> list[str]:
    """The ids of the catalog accounts ``where`` picks, in id order."""
    return sorted(acct for acct, entry in accounts.items() if matches(entry, where))
