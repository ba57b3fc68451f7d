"""One module per command: the work behind each verb the CLI declares."""
