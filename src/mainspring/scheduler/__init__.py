"""The scheduler: turns due fires into run records and publishes them on time."""
