"""Offline tools: the seem-ros CLI (track, evaluate, build engines), the demo, frame sources,
recording to folders and bags, and tracking evaluation on DAVIS."""
