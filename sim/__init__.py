"""Seeded simulation of a community's months through the real Lambda handlers on moto (issue 14)."""
