"""The admin listener's HTTP handlers."""
