"""Notifications: WeChat subscribe messages (one consent, one message), the local outbox, reminders."""
