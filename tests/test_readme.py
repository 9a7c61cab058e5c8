"""The README stays true: every setting and every CLI command is documented there."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from click import Group

from tallyql.cli import main
from tallyql.config import Settings
from tallyql.first_query import FIRST_QUERY

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_every_setting_is_in_the_readme() -> None:
    missing = [
        f"TALLYQL_{f.name.upper()}"
        for f in fields(Settings)
        if f"`TALLYQL_{f.name.upper()}`" not in README
    ]
    assert not missing, f"document these settings in README.md: {missing}"


def test_every_command_is_in_the_readme() -> None:
    def commands(group: Group, prefix: str) -> list[str]:
        found = []
        for name, command in group.commands.items():
            if isinstance(command, Group):
                found += commands(command, f"{prefix} {name}")
            else:
                found.append(f"{prefix} {name}")
        return found

    names = commands(main, "tallyql")
    assert len(names) >= 7
    missing = [name for name in names if f"`{name}" not in README]
    assert not missing, f"document these commands in README.md: {missing}"


def test_the_first_query_is_the_one_graphiql_and_the_cli_show() -> None:
    # tallyql/first_query.py is the one copy the GraphiQL page and `serve --demo` use
    assert f"```graphql\n{FIRST_QUERY}```" in README
