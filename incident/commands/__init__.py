"""Click commands beyond `scan` and `sample`, one module each; `incident.cli` registers them.

A command parses its flags, calls one library function and renders; it never holds logic of
its own. Errors are `IncidentError`s, mapped to exit codes by the group in `incident.cli`.
"""
