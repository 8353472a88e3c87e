"""options.py declares the build options once: the command line, a config file, a manifest entry, network_of's
defaults and the JSON schemas must all agree with it."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import click

import tflrnn.cli
from tflrnn.builder import network_of
from tflrnn.config import BuildOptions
from tflrnn.options import BUILD_OPTIONS, CONFIG_KEYS, LAYOUT_KEYS, OPTIONS

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"


def _properties(schema, name_in: str) -> set[str]:
    """The property names of the object in `schema` that has `name_in` among them."""
    found = set()

    def walk(node):
        if isinstance(node, dict):
            if name_in in node.get("properties", {}):
                found.update(node["properties"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return found


def test_the_command_line_has_exactly_the_declared_options():
    build = tflrnn.cli.cli.commands["build"]
    declared = {o.key: o.flags[0].split("/")[0] for o in BUILD_OPTIONS}
    params = {p.name: p.opts[0] for p in build.params if isinstance(p, click.Option) and p.name in OPTIONS}
    assert params == declared


def test_build_options_are_the_declared_ones():
    assert list(BuildOptions.__dataclass_fields__) == list(OPTIONS)
    assert BuildOptions(num_units=3).settings().keys() == {o.key for o in BUILD_OPTIONS if o.part != "source"}


def test_network_of_defaults_are_the_declared_ones():
    parameters = inspect.signature(network_of).parameters
    assert {key: parameters[key].default for key in LAYOUT_KEYS} == {key: OPTIONS[key].default for key in LAYOUT_KEYS}


def test_the_schemas_take_every_declared_key():
    config = _properties(json.loads((SCHEMAS / "cell-config.schema.json").read_text()), "num_units")
    manifest = _properties(json.loads((SCHEMAS / "manifest.schema.json").read_text()), "cell_name")
    assert set(CONFIG_KEYS) <= config, set(CONFIG_KEYS) - config
    assert set(OPTIONS) - {"num_units", "name"} <= manifest, set(OPTIONS) - manifest
