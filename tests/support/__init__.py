"""What the test modules share: servers, clients, reference recomputations, data builders.

A test module imports from here (or the fixtures in tests/conftest.py), never from another test
module: tests/test_layout.py checks it.
"""
