"""The one expression language: native values, strings, errors with their place."""

from __future__ import annotations

import pytest
from ductwork.errors import ConfigError, ValidationError
from ductwork.expressions import ExpressionError, compile_value
from hypothesis import given, settings
from hypothesis import strategies as st

NAMES = ("input", "steps", "env", "product")
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@settings(deadline=None)  # the first example compiles Jinja's environment: slow on a busy VM
@given(json_values)
def test_an_exact_expression_keeps_the_native_value(value):
    compiled = compile_value("{{ input.v }}", names=NAMES, where="w")
    assert compiled.render({"input": {"v": value}}) == value


@given(st.integers(), st.text(alphabet="abc-xyz", min_size=1, max_size=10))
def test_anything_else_renders_to_a_string(n, word):
    compiled = compile_value(f"{word}{{{{ input.n }}}}", names=NAMES, where="w")
    assert compiled.render({"input": {"n": n}}) == f"{word}{n}"


@given(json_values.filter(lambda v: not isinstance(v, str) or "{" not in v))
def test_literals_pass_through(value):
    assert compile_value(value, names=NAMES, where="w").render({}) == value


def test_nested_mappings_and_step_references():
    compiled = compile_value(
        {"a": ["{{ steps.s1.x.output.id + 1 }}", {"b": "{{ steps['s2']['y'].status }}"}], "c": 3},
        names=NAMES,
        where="w",
    )
    assert compiled.references == {("s1", "x"), ("s2", "y")}
    ctx = {"steps": {"s1": {"x": {"output": {"id": 1}}}, "s2": {"y": {"status": "ok"}}}}
    assert compiled.render(ctx) == {"a": [2, {"b": "ok"}], "c": 3}


def test_unknown_names_and_parse_errors_name_their_place():
    with pytest.raises(ExpressionError, match=r"features\.f\.s\.t\.input\.x: .*undefined name"):
        compile_value({"x": "{{ inptu.a }}"}, names=NAMES, where="features.f.s.t.input")
    with pytest.raises(ConfigError, match="does not parse"):
        compile_value("{{ input. }}", names=NAMES, where="w")


def test_runtime_undefined_and_the_sandbox_refuse_clearly():
    with pytest.raises(ValidationError, match="has no attribute 'missing'"):
        compile_value("{{ input.missing }}", names=NAMES, where="w").render({"input": {}})
    with pytest.raises(ValidationError, match="unsafe"):
        compile_value("{{ input.__class__ }}", names=NAMES, where="w").render({"input": {}})


def test_mapping_keys_win_over_dict_methods():
    compiled = compile_value(
        "{{ steps.cache.get.output }} {{ input.items }}", names=NAMES, where="w"
    )
    ctx = {"steps": {"cache": {"get": {"output": 7}}}, "input": {"items": 3}}
    assert compiled.render(ctx) == "7 3"


names = st.sampled_from(["a", "b", "items", "get", "keys", "x_1"])
trees = st.recursive(
    st.none() | st.integers() | st.text(max_size=3),
    lambda inner: st.dictionaries(names, inner, max_size=3) | st.lists(inner, max_size=2),
    max_leaves=10,
)


@settings(deadline=None)
@given(st.dictionaries(names, trees, max_size=3), st.lists(names, min_size=0, max_size=3))
def test_a_dotted_path_reads_what_jinja_reads(tree, path):
    """``{{ input.a.b }}`` is read by lookups while it can be; the answer is Jinja's own."""
    from ductwork.expressions import environment

    source = ".".join(["input", *path])
    compiled = compile_value(f"{{{{ {source} }}}}", names=NAMES, where="w")
    jinja = environment().compile_expression(source, undefined_to_none=False)
    context = {"input": tree}
    try:
        expected = jinja(**context)
        str(expected)  # an undefined value raises here (strict)
    except Exception:
        with pytest.raises(ValidationError):
            compiled.render(context)
        return
    found = compiled.render(context)
    assert found == expected or callable(expected)
