"""Registered networks; every non-private module here is imported by the registry."""
