"""Simulated handsets for end-to-end tests and load tests.

``formats`` reads every vendor file format back into the vendor's flat keys, so a
simulated phone can show which settings it ended up with after provisioning.
"""
