"""HTTP route modules; each exposes ``router``."""
