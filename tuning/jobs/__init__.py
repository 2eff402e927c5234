"""Retraining jobs: one at a time, each in its own process, state in the database, progress in a JSON file.

records (the tuning_jobs table), store (start, cancel, reap dead workers), paths and
progress (the job's files), launch (the worker process), worker (what it runs:
assemble, train, evaluate through the gate, register), run (`python -m tuning.jobs.run`).
"""
