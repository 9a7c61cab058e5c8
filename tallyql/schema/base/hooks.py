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
from collections.abc import Callable
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


_plans: dict[tuple[str, tuple[type, ...]], list[tuple[int, str, Any]]] = {}


class _CachedLookup(ExtensionContextManagerBase):
    def __init__(self, extensions: list[SchemaExtension]) -> None:
        # which of these extensions' classes implement the hook, and how: found once per
        # list of classes (a schema has one), then only the implementing ones are wrapped
        classes = tuple(type(extension) for extension in extensions)
        plan = _plans.get((self.HOOK_NAME, classes))
        if plan is None:
            plan = _plans[(self.HOOK_NAME, classes)] = [
                (index, *found)
                for index, cls in enumerate(classes)
                if (found := _kind(cls, self.HOOK_NAME)) is not None
            ]
        self.default_hook = getattr(SchemaExtension, self.HOOK_NAME)
        self.hooks = [self._wrap(extensions[index], kind, hook) for index, kind, hook in plan]

    def _wrap(self, extension: SchemaExtension, kind: str, hook: Any) -> WrappedHook:
        enter: Callable[[], object]
        if kind == _GENERATOR:
            enter = partial(contextlib._GeneratorContextManager, hook, (extension,), {})
            return WrappedHook(extension=extension, hook=enter, is_async=False)
        if kind == _ASYNC_GENERATOR:
            enter = partial(contextlib._AsyncGeneratorContextManager, hook, (extension,), {})
            return WrappedHook(extension=extension, hook=enter, is_async=True)
        wrapped = super().get_hook(extension)  # plain callables: strawberry's own wrapping
        assert wrapped is not None
        return wrapped


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
