"""Moved to ``modelyard.storage``; this re-export only serves ``catalog.py`` until it imports
from there (the lead's merge removes this file)."""

from modelyard.storage import read_json, storage_path  # noqa: F401
