"""``muma console``: create and list the console's operators (the first admin comes from here)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

operators_app = typer.Typer(
    help="Operators of the console (served at /console by muma serve).", no_args_is_help=True
)


def _store():
    from muma.settings import SettingsError, load_settings

    from .store import ConsoleStore, store_path

    try:
        settings = load_settings()
    except SettingsError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    return ConsoleStore(store_path(settings.data_root))


@operators_app.command("add-user")
def add_user(
    name: Annotated[str, typer.Argument(help="Login name: 3-32 lowercase letters, digits, . _ -")],
    role: Annotated[
        str, typer.Option(help="editor (upload, review) or admin (also operators).")
    ] = "editor",
    password_stdin: Annotated[
        bool, typer.Option(help="Read the password from the first line of stdin (scripts).")
    ] = False,
) -> None:
    """Create an operator; the password is prompted for (twice) unless --password-stdin."""
    from .store import StoreError

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    try:
        operator = _store().add_operator(name, password, role)
    except StoreError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"added {operator.name} ({operator.role})")


@operators_app.command("list-users")
def list_users() -> None:
    """Print every operator: name, role, state."""
    for operator in _store().operators():
        state = "active" if operator.active else "disabled"
        typer.echo(f"{operator.name}\t{operator.role}\t{state}")
