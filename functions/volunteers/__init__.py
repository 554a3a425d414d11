"""Volunteers: profiles, 志愿帮 skills, statistics and matching."""
