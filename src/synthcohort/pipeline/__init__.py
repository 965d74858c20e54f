"""The batch pipeline: one config file drives extract -> fit -> generate -> evaluate -> export."""
