"""Deterministic synthetic traffic for `tallyql demo`, `tallyql serve --demo` and benchmarks."""

from tallyql.demo.catalog import DemoUser, DemoWorld, build_world
from tallyql.demo.generator import generate_batches, generate_events

__all__ = ["DemoUser", "DemoWorld", "build_world", "generate_batches", "generate_events"]
