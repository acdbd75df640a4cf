"""Tenants, users, partner links, opt-in and DPAs, and the access policy over them."""
