"""The admin API through its routes, on SQLite and PostgreSQL.

The authorization matrix (``test_matrix.py``) covers route x caller x relation. The
``test_security_*.py`` modules cover the security cases of the delegated-admin rules
(reference §9) that a matrix cell cannot: state changing between two requests of one
token, the clock at the expiry boundary, IDs that must never match, bodies carrying
fields the caller must not set, method switching, tenant IDs smuggled into bodies and
headers, and the audit log's immutability down to SQL.
"""
