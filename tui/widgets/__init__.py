"""Widgets of the triage console."""
