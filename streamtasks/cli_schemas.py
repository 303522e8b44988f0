"""``streamtasks schemas ...``: export the app's Avro contract and check changes against it
(thin layer over :mod:`streamtasks.schema_export` and :mod:`streamtasks.compat`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from streamtasks._cli_common import AppArg, fail
from streamtasks.errors import StreamtasksError

__all__ = ["schemas_cli"]

schemas_cli = typer.Typer(
    help="Export the app's Avro schemas, and check a change for compatibility.",
    no_args_is_help=True,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


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
