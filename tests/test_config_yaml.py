"""Reading ductwork.yaml strictly: duplicate keys refused, YAML 1.2 booleans, ``x-`` anchors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from ductwork import ConfigError
from ductwork.config.loader import Config
from ductwork.config.schema import json_schema
from ductwork.config.yamlfile import load_yaml
from hypothesis import given, settings
from hypothesis import strategies as st

HEAD = "product: shop\nenvironments: [dev, prd]\n"


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "ductwork.yaml"
    path.write_text(HEAD + textwrap.dedent(body))
    return path


def refused(tmp_path: Path, body: str) -> str:
    with pytest.raises(ConfigError) as info:
        Config.load(write(tmp_path, body))
    return str(info.value)


def test_a_duplicated_env_entry_is_refused_naming_its_path_and_both_lines(tmp_path):
    message = refused(
        tmp_path,
        """\
        storage:
          files:
            dev: {provider: local, path: a}
            prd: {provider: local, path: b}
            prd: {provider: local, path: c}
        """,
    )
    assert "duplicate key 'storage.files.prd' at lines 6 and 7" in message
    assert "ductwork.yaml" in message


def test_two_top_level_sections_and_a_duplicated_option_are_refused(tmp_path):
    twice = """\
        storage:
          files: {dev: {provider: local, path: a}, prd: {provider: local, path: a}}
        storage:
          other: {dev: {provider: local, path: b}, prd: {provider: local, path: b}}
        """
    assert "duplicate key 'storage' at lines 3 and 5" in refused(tmp_path, twice)
    option = """\
        storage:
          files: {dev: {provider: local, path: a, path: b}, prd: {provider: local, path: a}}
        """
    assert "duplicate key 'storage.files.dev.path' at lines 4 and 4" in refused(tmp_path, option)


@pytest.mark.parametrize("word", ["no", "on", "off", "yes", "y", "n"])
def test_yaml_1_1_boolean_words_are_strings(tmp_path, word):
    path = tmp_path / "ductwork.yaml"
    path.write_text(
        f"product: shop\nenvironments: [dev, {word}]\n"
        "storage:\n  files:\n    dev: {provider: local, path: a}\n"
        f"    {word}: {{provider: local, path: b}}\n"
    )
    config = Config.load(path)
    assert config.product.environments == ["dev", word]
    assert len(config.validate(word)) == 1
    loaded = load_yaml("a: true\nb: False\nc: off\nd: No\ne: ON\n")
    assert loaded == {"a": True, "b": False, "c": "off", "d": "No", "e": "ON"}


def test_x_keys_hold_anchors_and_are_ignored(tmp_path):
    path = write(
        tmp_path,
        """\
        x-local: &local {provider: local}
        storage:
          files:
            dev: {<<: *local, path: a}
            prd: {<<: *local, path: b}
        """,
    )
    config = Config.load(path)
    assert [str(r.options.path) for r in config.validate("dev")] == ["a"]
    assert "x-local" not in config.show("dev")
    assert "^x-" in json_schema()["patternProperties"]


def test_keys_of_different_types_are_not_duplicates():
    assert load_yaml("a:\n  1: x\n  '1': y\n") == {"a": {1: "x", "1": "y"}}
    with pytest.raises(ConfigError, match=r"duplicate key 'a\.1' at lines 2 and 3"):
        load_yaml("a:\n  '1': x\n  \"1\": y\n")


def test_an_alias_used_twice_is_not_a_duplicate(tmp_path):
    path = write(
        tmp_path,
        """\
        x-base: &base {provider: local, path: a}
        storage:
          files: {dev: *base, prd: *base}
          other: {dev: *base, prd: *base}
        """,
    )
    assert len(Config.load(path).validate("prd")) == 2


keys = st.text(alphabet="abcdefghij", min_size=1, max_size=6)
trees = st.recursive(
    st.dictionaries(keys, st.integers(), min_size=1, max_size=4),
    lambda inner: st.dictionaries(keys, inner, min_size=1, max_size=4),
    max_leaves=20,
)


def _dump(tree: dict, indent: int = 0) -> list[str]:
    lines = []
    for key, value in tree.items():
        if isinstance(value, dict):
            lines.append(" " * indent + f"{key}:")
            lines.extend(_dump(value, indent + 2))
        else:
            lines.append(" " * indent + f"{key}: {value}")
    return lines


def _mappings(tree: dict, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], dict]]:
    found = [(path, tree)]
    for key, value in tree.items():
        if isinstance(value, dict):
            found.extend(_mappings(value, (*path, key)))
    return found


@settings(max_examples=60, deadline=None)
@given(tree=trees, data=st.data())
def test_a_key_duplicated_at_any_depth_is_refused_naming_it(tree, data):
    path, mapping = data.draw(st.sampled_from(_mappings(tree)))
    key = data.draw(st.sampled_from(sorted(mapping)))
    text = "\n".join(_dump(tree))
    assert load_yaml(text) == tree  # the same tree without the duplicate loads as it was
    # Repeat the key's whole entry (with its block, if any) right after it.
    lines = _dump(tree)
    depth = 2 * len(path)
    prefix = " " * depth + f"{key}:"
    start = next(
        i
        for i, line in enumerate(lines)
        if line.startswith(prefix) and _path_of(lines, i) == (*path, key)
    )
    end = start + 1
    while end < len(lines) and len(lines[end]) - len(lines[end].lstrip()) > depth:
        end += 1
    doubled = lines[:end] + lines[start:end] + lines[end:]
    with pytest.raises(ConfigError) as info:
        load_yaml("\n".join(doubled))
    assert f"duplicate key {'.'.join((*path, key))!r}" in str(info.value)


def _path_of(lines: list[str], index: int) -> tuple[str, ...]:
    """The key path of the entry on line ``index`` of a block dumped by ``_dump``."""
    path: list[str] = []
    depth = len(lines[index]) - len(lines[index].lstrip())
    for line in reversed(lines[: index + 1]):
        indent = len(line) - len(line.lstrip())
        if indent == depth:
            path.insert(0, line.strip().split(":")[0])
            depth -= 2
        if depth < 0:
            break
    return tuple(path)


DOCS = Path(__file__).parent.parent / "docs"


def _whole_product_files() -> list[tuple[str, str]]:
    import re
    from importlib.resources import files

    found = [("init template", files("ductwork.templates").joinpath("ductwork.yaml").read_text())]
    for page in sorted(DOCS.rglob("*.md")):
        for block in re.findall(r"```yaml\n(.*?)```", page.read_text(), re.S):
            if "product:" in block and "environments:" in block:
                found.append((str(page.relative_to(DOCS)), block))
    return found


@pytest.mark.parametrize(("where", "text"), _whole_product_files(), ids=lambda v: v[:30])
def test_documented_product_files_still_load(where, text, tmp_path):
    Config.from_text(text, root=tmp_path, file=Path(where))


def test_a_deprecated_option_left_unset_does_not_warn():
    import warnings

    from ductwork.config.loader import Config

    config = Config.from_dict(
        {
            "product": "p",
            "environments": ["dev"],
            "brokers": {"k": {"dev": {"provider": "kafka", "bootstrap_servers": "127.0.0.1:1"}}},
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # kafka's ssl_ca_location is deprecated, and unset here
        assert config.resolve("brokers", "k", "dev").provider == "kafka"
