"""The edge server: a Flask REST API over the core services (``classifi serve`` runs it)."""
