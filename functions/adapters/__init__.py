"""Shared plumbing of the adapters: DynamoDB, SQS, secrets and the event outbox; no domain rules here."""
