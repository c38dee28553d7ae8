"""medical."""
