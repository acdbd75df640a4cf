"""3rd-party file provisioning: vendor profiles, device detection and renderers per format family.

Vendors are data (``profiles/<vendor>.toml``); the code here knows only format families.
"""
