"""The Compose stack run as native processes (see conftest.py)."""
