"""The public names are listed once in ``sseprobe._LAZY`` (name -> module); ``__all__`` and the names
typed for mypy (the TYPE_CHECKING imports) must say the same, and each name must load."""

from __future__ import annotations

import ast
import inspect

import sseprobe


def _typed_names() -> set[str]:
    tree = ast.parse(inspect.getsource(sseprobe))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for stmt in node.body:
                assert isinstance(stmt, ast.ImportFrom)
                names |= {alias.asname or alias.name for alias in stmt.names}
    return names


def test_one_list_of_public_names() -> None:
    lazy = set(sseprobe._LAZY)
    assert set(sseprobe.__all__) == lazy
    assert len(sseprobe.__all__) == len(lazy)  # no name twice
    assert _typed_names() == lazy


def test_every_public_name_loads() -> None:
    for name in sseprobe.__all__:
        assert getattr(sseprobe, name) is not None, name


def test_a_session_record_as_plain_values_has_every_field() -> None:
    """``SessionRecord.to_dict`` is written out field by field (typed): it must keep up with the dataclass."""
    from dataclasses import asdict

    from sseprobe._outcomes import Outcome

    rec = sseprobe.SessionRecord("canonical", 3, 1.0, 2.5, 200, Outcome.OK, True, ttfe_ms=80.0, error="x")
    plain = rec.to_dict()
    assert plain == {**asdict(rec), "outcome": "ok"} and list(plain) == list(asdict(rec))
    assert type(plain["outcome"]) is str
