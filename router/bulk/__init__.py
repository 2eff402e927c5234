"""Bulk routing of a backlog file (`triage route --input FILE --output FILE`)."""

from router.bulk.records import FORMATS, BulkError, Record, read_records
from router.bulk.run import CHUNK, Summary, route_backlog

__all__ = ["CHUNK", "FORMATS", "BulkError", "Record", "Summary", "read_records", "route_backlog"]
