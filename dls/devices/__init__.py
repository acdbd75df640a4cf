"""Devices: the canonical settings model and how a device's effective settings are resolved.

The settings model is the one vendor-neutral description of what a phone or ATA should be
configured with; vendor profiles map it to vendor keys. Resolution merges the sparse
settings documents of the system, tenant, device group, user and device into it, keeping
for every value the level it came from so the admin console can explain it.
"""
