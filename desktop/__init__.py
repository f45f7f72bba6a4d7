"""The PySide6 desktop app: classify photos, submit corrections, review, manage models.

It is a thin front end: every decision is a call into ``core`` (local mode) or the edge
server (remote mode) through :mod:`desktop.backends`; the widgets only turn answers into pixels.
"""
