"""``make bench``: DynamoDB calls and items per business operation, and cold import times."""
