"""Keeping prompted objects segmented across frames: ids, status, association, re-identification."""
