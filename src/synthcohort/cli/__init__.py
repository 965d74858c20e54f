"""Command-line interface: click commands, one module per command; the only layer that prints."""
