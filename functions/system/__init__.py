"""The platform Blueprint: health, the OpenAPI document and the event relay's sweep (no domain rules)."""
