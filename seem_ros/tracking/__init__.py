"""Keeping prompted objects segmented across frames."""
