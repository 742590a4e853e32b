"""The `callsctl` command line."""

from __future__ import annotations

import click


@click.group()
def cli() -> None:
    """Operate the Calls backend."""


def main() -> None:
    cli()
