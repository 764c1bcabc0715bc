"""Audits of stores against what should be there, and repair from a good copy."""
