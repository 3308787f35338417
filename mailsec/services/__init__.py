"""Write use-cases of the core, one module per area: audit, members, tokens.

Every function takes the acting user explicitly and writes the audit log in the same transaction.
The job runner (claim, execute, reap) lives in `mailsec.jobs`.
"""
