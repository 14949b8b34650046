"""The test suite as one package: every test module is imported once, as ``tests.<module>``.

Builders and fixtures shared by several modules live in ``tests/support/`` and ``tests/conftest.py``;
no test module imports another.
"""
