"""``ByObject`` (bridge/domain/memo.py): kept by the objects' identity, never by equality."""

from __future__ import annotations

from bridge.domain.memo import ByObject


def test_computed_once_per_objects_and_extra() -> None:
    memo: ByObject[str] = ByObject()
    a, b = {"k": 1}, {"k": 1}  # equal, not the same
    calls: list[str] = []

    def make(tag: str) -> str:
        calls.append(tag)
        return tag

    assert memo.get((a,), 1, lambda: make("a1")) == "a1"
    assert memo.get((a,), 1, lambda: make("again")) == "a1"
    assert memo.get((b,), 1, lambda: make("b1")) == "b1"  # an equal object is not the same: computed
    assert memo.get((a,), 2, lambda: make("a2")) == "a2"  # another extra: computed
    assert calls == ["a1", "b1", "a2"]


def test_a_reused_id_never_answers_for_another_object() -> None:
    memo: ByObject[str] = ByObject()
    memo._kept[(id(object()), None)] = ((object(),), "stale")  # an entry whose object is not the one asked for
    other = object()
    memo._kept[(id(other), None)] = ((object(),), "stale")
    assert memo.get((other,), None, lambda: "fresh") == "fresh"


def test_bounded() -> None:
    memo: ByObject[int] = ByObject(size=3)
    objs = [object() for _ in range(10)]
    for i, o in enumerate(objs):
        memo.get((o,), None, lambda i=i: i)
    assert len(memo._kept) <= 3
