"""Small shared pieces: the one error hierarchy, logging setup, net helpers."""
