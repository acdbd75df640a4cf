"""Admin authentication: password hashing, bearer tokens, login rate limits."""
