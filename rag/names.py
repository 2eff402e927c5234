"""Names of the Chroma collections (a module of its own so importing it costs nothing)."""

POLICIES = "triage-policies"
PRECEDENTS = "triage-precedents"
