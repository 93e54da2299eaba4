"""Fit objects and their printed forms."""
