"""``streamtasks schemas check``: Avro schema-resolution rules, and messages naming the task,
field and rule broken."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from streamtasks.cli import cli
from streamtasks.schema_export import collect, write_export
from streamtasks.wire.schema.compat import Compat, Subject, check, resolution_problems
from tests.unit import schema_apps

runner = CliRunner()


def record(*fields: dict[str, Any], name: str = "R") -> dict[str, Any]:
    return {"type": "record", "name": name, "namespace": "n", "fields": list(fields)}


def rules(writer: Any, reader: Any) -> list[tuple[str, str]]:
    return [(i.path, i.rule) for i in resolution_problems(writer, reader)]


@pytest.mark.parametrize(
    ("writer", "reader", "expected"),
    [
        # a field added with a default: fine; without one: broken
        (record(), record({"name": "a", "type": "long", "default": 1}), []),
        (record(), record({"name": "a", "type": "long"}), [("a", "missing-without-default")]),
        # a field removed: the reader ignores it
        (record({"name": "a", "type": "long"}), record(), []),
        # promotions allowed by the specification, and not the other way round
        (record({"name": "a", "type": "int"}), record({"name": "a", "type": "long"}), []),
        (record({"name": "a", "type": "long"}), record({"name": "a", "type": "double"}), []),
        (record({"name": "a", "type": "string"}), record({"name": "a", "type": "bytes"}), []),
        (
            record({"name": "a", "type": "long"}),
            record({"name": "a", "type": "int"}),
            [("a", "type-changed")],
        ),
        # X -> X | None is fine; X | None -> X is not (null cannot be read)
        (
            record({"name": "a", "type": "string"}),
            record({"name": "a", "type": ["null", "string"], "default": None}),
            [],
        ),
        (
            record({"name": "a", "type": ["null", "string"], "default": None}),
            record({"name": "a", "type": "string"}),
            [("a", "default-removed"), ("a", "type-changed")],
        ),
        # logical types read as their underlying type
        (
            record({"name": "a", "type": {"type": "int", "logicalType": "date"}}),
            record({"name": "a", "type": "long"}),
            [],
        ),
        # nested records, by path; arrays and maps through their items / values
        (
            record({"name": "a", "type": record({"name": "x", "type": "long"}, name="In")}),
            record(
                {
                    "name": "a",
                    "type": record(
                        {"name": "x", "type": "long"}, {"name": "y", "type": "string"}, name="In"
                    ),
                }
            ),
            [("a.y", "missing-without-default")],
        ),
        (
            record({"name": "a", "type": {"type": "array", "items": "string"}}),
            record({"name": "a", "type": {"type": "array", "items": "long"}}),
            [("a", "type-changed")],
        ),
        # enums: a symbol the reader lacks breaks unless the enum has a default
        (
            record({"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "B"]}}),
            record({"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A"]}}),
            [("e", "enum-symbols")],
        ),
        (
            record({"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "B"]}}),
            record(
                {
                    "name": "e",
                    "type": {"type": "enum", "name": "E", "symbols": ["A"], "default": "A"},
                }
            ),
            [],
        ),
        # a renamed record needs an alias
        (record(name="Old"), record(name="New"), [("", "name-changed")]),
        ({**record(name="Old")}, {**record(name="New"), "aliases": ["n.Old"]}, []),
    ],
    ids=lambda v: json.dumps(v)[:60] if isinstance(v, dict | list) else str(v),
)
def test_resolution_rules(writer: Any, reader: Any, expected: list[tuple[str, str]]) -> None:
    # When a reader is checked against a writer, Then exactly the expected rules break
    assert sorted(rules(writer, reader)) == sorted(expected)


def test_check_names_each_task_field_and_rule_under_backward() -> None:
    # Given v1 as exported before, and a v2 that breaks it
    before = {s.name: s for s in _subjects(schema_apps.v1)}

    # When v2 is checked (BACKWARD, the default)
    problems = check(_subjects(schema_apps.v2_broken), [before])

    # Then each break is named, once (not again for the chain-step record)
    assert [p.message for p in problems] == [
        "task shop.charge: field `amount` changed type from long to string — events queued "
        "before cannot be read",
        "task shop.charge: field `currency` removed its default — events queued before "
        "cannot be read",
        "task shop.charge: field `note` added without a default — events queued before "
        "cannot be read",
        "task shop.ship: field `plan`: symbol TEAM removed from enum "
        "tests_unit_schema_apps_Plan, which has no default — events queued before cannot be read",
    ]
    assert {p.rule for p in problems} == {
        "type-changed",
        "default-removed",
        "field-added-without-default",
        "enum-symbol-removed",
    }


def test_forward_and_full_ask_the_other_way_round() -> None:
    before = {s.name: s for s in _subjects(schema_apps.v1)}
    broken = _subjects(schema_apps.v2_broken)

    forward = check(broken, [before], Compat.FORWARD)
    full = check(broken, [before], Compat.FULL)

    # FORWARD: old readers cannot read a string amount (a removed default does not matter)
    assert [p.field for p in forward] == ["amount"]
    assert "readers not yet upgraded" in forward[0].message
    # FULL: both directions
    assert len(full) == 5


def test_compatible_evolution_passes_every_mode() -> None:
    before = {s.name: s for s in _subjects(schema_apps.v1)}
    for mode in Compat:
        assert check(_subjects(schema_apps.v2_ok), [before], mode) == [], mode


def test_transitive_checks_every_version_and_plain_backward_only_the_latest() -> None:
    # Given v1, then v2_ok (adds `on` with a default), then v3 (makes `on` required)
    v1 = {s.name: s for s in _subjects(schema_apps.v1)}
    ok = {s.name: s for s in _subjects(schema_apps.v2_ok)}
    current = _subjects(schema_apps.v3_required)

    # When v3 is checked against both, BACKWARD and BACKWARD_TRANSITIVE
    backward = check(current, [v1, ok], Compat.BACKWARD)
    transitive = check(current, [v1, ok], Compat.BACKWARD_TRANSITIVE)

    # Then plain BACKWARD compares with the latest only (v2_ok had a default for `on`)
    assert [(p.field, p.rule) for p in backward] == [("on", "default-removed")]
    # And only the transitive check sees that v1 events lack `on` altogether
    assert ("on", "field-added-without-default") in {(p.field, p.rule) for p in transitive}
    assert ("on", "field-added-without-default") not in {(p.field, p.rule) for p in backward}


def test_a_removed_task_is_reported() -> None:
    before = {s.name: s for s in _subjects(schema_apps.v1)}
    app = schema_apps._app()
    app.task(name="shop.charge")(schema_apps.charge.func)

    problems = check(_subjects(app), [before])

    assert [p.message for p in problems] == [
        "task shop.ship: removed — events queued before would find no task to run them"
    ]


def test_cli_check_exit_codes_and_output(tmp_path: Path) -> None:
    # Given v1 exported
    write_export(collect(schema_apps.v1), tmp_path)
    base = ["schemas", "check", "--against", str(tmp_path)]

    # When a compatible app is checked: exit 0
    ok = runner.invoke(cli, [*base, "tests.unit.schema_apps:v2_ok"])
    assert ok.exit_code == 0, ok.output
    assert "compatible (BACKWARD)" in ok.output

    # When a breaking one is: exit 1, each break on its own line
    bad = runner.invoke(cli, [*base, "tests.unit.schema_apps:v2_broken"])
    assert bad.exit_code == 1
    assert (
        "task shop.charge: field `currency` removed its default — events queued before "
        "cannot be read"
    ) in bad.output.splitlines()

    # And --json reports the same, machine-readably
    as_json = runner.invoke(cli, [*base, "tests.unit.schema_apps:v2_broken", "--json"])
    assert as_json.exit_code == 1
    report = json.loads(as_json.output)
    assert report["compatible"] is False
    assert {p["field"] for p in report["problems"]} == {"amount", "currency", "note", "plan"}


def test_cli_check_rejects_an_unknown_mode_and_a_missing_export(tmp_path: Path) -> None:
    app = "tests.unit.schema_apps:v1"
    bad_mode = runner.invoke(cli, ["schemas", "check", app, "--against", ".", "--compat", "X"])
    assert bad_mode.exit_code == 2
    assert "--compat must be one of" in bad_mode.output
    missing = runner.invoke(cli, ["schemas", "check", app, "--against", str(tmp_path)])
    assert missing.exit_code != 0
    assert "export the schemas first" in missing.output


def _subjects(app: Any) -> list[Subject]:
    from streamtasks.schema_export import current_subjects

    return current_subjects(app)
