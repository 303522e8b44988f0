"""``streamtasks schemas ...``: export the app's Avro contract and check changes against it
(thin layer over :mod:`streamtasks.schema_export` and :mod:`streamtasks.wire.schema.compat`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from streamtasks.cli.common import AppArg, fail
from streamtasks.errors import StreamtasksError

__all__ = ["schemas_cli"]

schemas_cli = typer.Typer(
    help="Export the app's Avro schemas, and check a change for compatibility.",
    no_args_is_help=True,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


@schemas_cli.command("export")
def schemas_export(
    app: AppArg,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Directory to write the .avsc files into.")
    ] = Path("schemas"),
    as_json: JsonOpt = False,
) -> None:
    """Write one .avsc per subject (task arguments and results, the envelope, result, event
    and workflow records, shared types) and an index.json. Re-running gives no diff.

    Example: streamtasks schemas export myproj.tasks:app --out contracts/
    """
    from streamtasks._loading import load_app
    from streamtasks.schema_export import collect, write_export

    try:
        subjects = collect(load_app(app))
        changed = write_export(subjects, out)
    except StreamtasksError as exc:
        fail(exc)
    if as_json:
        listing = [s.index_entry() for s in subjects]
        typer.echo(json.dumps({"out": str(out), "changed": changed, "schemas": listing}, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{out}: {len(subjects)} schemas, {len(changed)} files changed")
    for column in ("subject", "kind", "task", "fingerprint"):
        table.add_column(column, overflow="fold")
    for s in subjects:
        table.add_row(s.name, s.kind, s.task or "-", s.fingerprint)
    Console().print(table)


@schemas_cli.command("check")
def schemas_check(
    app: AppArg,
    against: Annotated[
        list[Path] | None,
        typer.Option(
            "--against",
            help="An export directory to compare with (repeat for older versions, oldest "
            "first; BACKWARD_TRANSITIVE checks them all).",
        ),
    ] = None,
    registry: Annotated[
        str | None,
        typer.Option("--registry", help="A Confluent-compatible Schema Registry URL instead."),
    ] = None,
    compat: Annotated[
        str, typer.Option("--compat", help="BACKWARD, FORWARD, FULL or BACKWARD_TRANSITIVE.")
    ] = "BACKWARD",
    as_json: JsonOpt = False,
) -> None:
    """Check the app's current schemas against exported (or registered) ones by Avro's
    schema-resolution rules. Exit 0: compatible; exit 1: each broken rule is listed.

    Example: streamtasks schemas check myproj.tasks:app --against contracts/ (the CI step)
    """
    from streamtasks.errors import ConfigError
    from streamtasks.wire.schema.compat import Compat, check

    try:
        mode = Compat(compat.upper())
    except ValueError:
        fail(ConfigError(f"--compat must be one of {', '.join(Compat)}, not {compat!r}"))
    if (against is None) == (registry is None):
        fail(ConfigError("give either --against DIR or --registry URL"))
    from streamtasks._loading import load_app
    from streamtasks.schema_export import current_subjects, stored_subjects

    try:
        loaded = load_app(app)
        current = current_subjects(loaded)
        if against is not None:
            versions = [stored_subjects(d) for d in against]
            where = ", ".join(str(d) for d in against)
        else:
            assert registry is not None
            from streamtasks.wire.registry import (
                SchemaRegistry,
                registered_versions,
                registry_config,
            )

            conf = registry_config(registry) or {"url": registry}
            versions = registered_versions(SchemaRegistry(conf), current)
            where = registry
        problems = check(current, versions, mode)
    except StreamtasksError as exc:
        fail(exc)
    if as_json:
        report = {
            "compatible": not problems,
            "compat": str(mode),
            "against": where,
            "problems": [p.to_json() for p in problems],
        }
        typer.echo(json.dumps(report, indent=2))
    elif problems:
        for problem in problems:
            typer.echo(problem.message)
        typer.echo(f"{len(problems)} incompatible change(s) ({mode}) against {where}", err=True)
    else:
        typer.echo(f"compatible ({mode}): {len(current)} schemas checked against {where}")
    if problems:
        raise typer.Exit(1)
