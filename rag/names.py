"""Names of the Chroma collections (a module of its own so importing it costs nothing)."""

POLICIES = "triage-policies"
PRECEDENTS = "triage-precedents"
EXAMPLE, CORRECTION = "example", "correction"  # the two kinds of precedent (metadata "kind")
