"""Embedded providers: what works with no server at all."""
