"""Shared core: errors, settings, validation, ids, clock and the HTTP plumbing every domain uses."""
