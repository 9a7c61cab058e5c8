"""strawberry's schema-extension runner, with each extension class's hooks looked up once.

For every request and each of its four stages (operation, parsing, validation, execution)
strawberry inspects every extension for the stage's hook and wraps it in a new
`contextlib.contextmanager` (functools.update_wrapper included): with tallyql's extensions
that was about a tenth of a trivial query's server time (bench/overhead.py). Here the
inspection is cached per extension class and stage, and a generator hook is entered through
the same context-manager classes `contextlib.contextmanager` and `asynccontextmanager`
build, without the decorator. Behaviour is strawberry's: the same hooks, in the same order,
with the same exception semantics.
"""

from __future__ import annotations

import contextlib
import inspect
from functools import partial
from typing import Any

from strawberry.extensions import SchemaExtension
from strawberry.extensions.context import (
    ExecutingContextManager,
    ExtensionContextManagerBase,
    OperationContextManager,
    ParsingContextManager,
    ValidationContextManager,
    WrappedHook,
)
from strawberry.extensions.runner import SchemaExtensionsRunner

_GENERATOR = "generator"
_ASYNC_GENERATOR = "async generator"
_OTHER = "other"
_kinds: dict[tuple[type, str], tuple[str, Any] | None] = {}


def _kind(cls: type, hook_name: str) -> tuple[str, Any] | None:
    """How `cls` implements the hook: None when it keeps SchemaExtension's default."""
    key = (cls, hook_name)
    if key not in _kinds:
        hook = getattr(cls, hook_name)
        if hook is getattr(SchemaExtension, hook_name):
            _kinds[key] = None
        elif inspect.isgeneratorfunction(hook):
            _kinds[key] = (_GENERATOR, hook)
        elif inspect.isasyncgenfunction(hook):
            _kinds[key] = (_ASYNC_GENERATOR, hook)
        else:
            _kinds[key] = (_OTHER, hook)
    return _kinds[key]


class _CachedLookup(ExtensionContextManagerBase):
    def get_hook(self, extension: SchemaExtension) -> WrappedHook | None:
        found = _kind(type(extension), self.HOOK_NAME)
        if found is None:
            return None
        kind, hook = found
        if kind == _GENERATOR:
            enter = partial(contextlib._GeneratorContextManager, hook, (extension,), {})
            return WrappedHook(extension=extension, hook=enter, is_async=False)
        if kind == _ASYNC_GENERATOR:
            enter = partial(contextlib._AsyncGeneratorContextManager, hook, (extension,), {})
            return WrappedHook(extension=extension, hook=enter, is_async=True)
        return super().get_hook(extension)  # plain callables: strawberry's own wrapping


class _Operation(_CachedLookup, OperationContextManager):
    pass


class _Parsing(_CachedLookup, ParsingContextManager):
    pass


class _Validation(_CachedLookup, ValidationContextManager):
    pass


class _Executing(_CachedLookup, ExecutingContextManager):
    pass


class CachedHooksRunner(SchemaExtensionsRunner):
    def operation(self) -> OperationContextManager:
        return _Operation(self.extensions)

    def parsing(self) -> ParsingContextManager:
        return _Parsing(self.extensions)

    def validation(self) -> ValidationContextManager:
        return _Validation(self.extensions)

    def executing(self) -> ExecutingContextManager:
        return _Executing(self.extensions)
