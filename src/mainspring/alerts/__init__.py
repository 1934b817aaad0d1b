"""Alerts (M8): channels, rules evaluated in the recorder, deliveries with retries."""
