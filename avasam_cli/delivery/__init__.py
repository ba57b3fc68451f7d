"""What happens to a verified update after its 200: acknowledging it, forwarding it."""
