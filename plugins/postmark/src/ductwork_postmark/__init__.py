"""Postmark email notifier for ductwork."""
