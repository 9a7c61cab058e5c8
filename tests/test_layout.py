"""The test tree's layout: what test modules share lives in tests/support/ (or the fixtures of
tests/conftest.py), so no module under tests/ imports a test module. Importing one runs its
module-level code and hides the helper where nobody looks for it."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _imported_modules(source: str, package: str) -> list[str]:
    """Every module `source` (a module of `package`) imports, absolute, whatever the form."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            base = parts[: len(parts) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found.append(module)
            # `from tests import test_x` names the module in the alias
            found.extend(f"{module}.{alias.name}" for alias in node.names)
    return found


def _package_of(path: Path) -> str:
    return ".".join(path.relative_to(TESTS.parent).parts[:-1])


def _is_test_module(name: str) -> bool:
    parts = name.split(".")
    return parts[0] == "tests" and any(p.startswith("test_") for p in parts[1:])


def test_no_module_under_tests_imports_a_test_module() -> None:
    offenders = {
        f"{path.relative_to(TESTS.parent)} imports {name}"
        for path in sorted(TESTS.rglob("*.py"))
        for name in _imported_modules(path.read_text(), _package_of(path))
        if _is_test_module(name)
    }
    assert not offenders, "move what they share into tests/support/: " + "; ".join(
        sorted(offenders)
    )


def test_the_check_sees_each_form_of_import() -> None:
    # the guard above is only as good as its parser: each spelling of a test-module import counts
    for source in (
        "from tests.test_budgets import CREATE\n",
        "import tests.test_budgets\n",
        "from tests import test_budgets\n",
        "from .test_budgets import CREATE\n",
        "from ..test_budgets import CREATE\n",
    ):
        package = "tests.support" if source.startswith("from ..") else "tests"
        assert any(_is_test_module(n) for n in _imported_modules(source, package)), source
    assert not any(_is_test_module(n) for n in _imported_modules("from . import conftest", "tests"))
    assert not _is_test_module("tests.support.helpers")
