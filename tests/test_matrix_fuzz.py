"""Property test of the matrix parser: any document, however broken, is either a valid
matrix or rejected with one BenchError that names the field at fault; never another
exception, never a traceback."""

from __future__ import annotations

import tomllib
from typing import Any

import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.errors import BenchError
from bench.matrix import load_matrix
from bench.plugins import load_plugins

load_plugins()  # the built-in components, as `bench run` loads them before the matrix

VALID = {
    "name": "fuzz", "seed": 0, "batch_size": 8, "eot_samples": 2, "eps_unit": "1/255",
    "models": {"piqe": {}},
    "defenses": {"none": {}, "jpeg": {"quality": 50}},
    "attacks": {"fgsm": {"eps": [2, 4]}, "pgd": {"eps": [4], "steps": 3, "alpha": 1.0}},
    "datasets": {"embedded": {"size": 48, "n_images": 8}},
    "blocks": {"more": {"defenses": {"jpeg": {"quality": 30}}, "attacks": {"pgd": {"eps": [8]}}}},
}
# every place a user can get wrong, as a path into the document
PATHS = [
    ("name",), ("seed",), ("batch_size",), ("eot_samples",), ("eps_unit",), ("suite",), ("surprise",),
    ("models",), ("models", "piqe"), ("models", "no-such-model"), ("defenses",), ("defenses", "jpeg"),
    ("defenses", "jpeg", "quality"), ("defenses", "jpeg", "qualty"), ("attacks",), ("attacks", "fgsm"),
    ("attacks", "fgsm", "eps"), ("attacks", "pgd", "steps"), ("attacks", "pgd", "alpha"),
    ("datasets",), ("datasets", "embedded", "size"), ("datasets", "embedded", "n_images"),
    ("blocks",), ("blocks", "more"), ("blocks", "more", "defenses"), ("blocks", "more", "models"),
    ("blocks", "more", "attacks", "pgd", "eps"), ("blocks", "more", "oops"),
]

scalars = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.booleans(),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                      max_leaves=6)


def _mutated(path: tuple[str, ...], value: Any, delete: bool) -> dict[str, Any]:
    doc = tomllib.loads(tomli_w.dumps(VALID))  # a deep copy
    node = doc
    for key in path[:-1]:
        node = node[key]
    if delete:
        node.pop(path[-1], None)
    else:
        node[path[-1]] = value
    return doc


def _check(text: str, tmp_path, fields: tuple[str, ...] | None) -> None:
    f = tmp_path / "fuzz.toml"
    f.write_text(text)
    try:
        load_matrix(str(f))
    except BenchError as e:
        msg = str(e)
        assert "\n" not in msg.strip(), msg
        if fields:
            assert any(f in msg for f in fields), f"message names none of {fields}: {msg}"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(PATHS), value=values, delete=st.booleans())
def test_a_broken_field_is_rejected_naming_it(tmp_path, path, value, delete):
    # the field itself, or the table that holds it (a deleted entry leaves that one empty)
    _check(tomli_w.dumps(_mutated(path, value, delete)), tmp_path, path)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200))
def test_any_text_is_a_matrix_or_a_clear_error(tmp_path, text):
    _check(text, tmp_path, None)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(min_value=0, max_value=len(tomli_w.dumps(VALID))))
def test_a_truncated_matrix_is_a_clear_error(tmp_path, cut):
    _check(tomli_w.dumps(VALID)[:cut], tmp_path, None)
