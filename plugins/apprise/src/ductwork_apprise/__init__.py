"""Apprise notifier for ductwork."""
