"""Support tickets raised by customers and by partners on their behalf."""
