"""Health, metrics and status: what the database and broker say about the whole system."""
