"""Prompt tuning, evaluation and classical baselines for triage."""
