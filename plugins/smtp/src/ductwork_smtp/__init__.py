"""SMTP email notifier for ductwork."""
