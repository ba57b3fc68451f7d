"""The webhook receiver: the app, its store writer and printer, and its connection limits."""
