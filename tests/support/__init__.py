"""Builders shared by the test modules (data sets, command-line helpers, the tiny sweep).

Plain functions only: the session fixtures that call them are in ``tests/conftest.py``, so each
expensive artefact (phantom cohort, tiny run, tiny sweep) is built once per test session.
"""
