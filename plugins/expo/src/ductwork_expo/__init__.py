"""Expo push notifier for ductwork."""
