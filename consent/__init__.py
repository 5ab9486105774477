"""Who may see and do what: principals, roles, relationships, Consent, labels, audit.

Arrives with the access-control issue; until then the server is open.
"""
