"""The inspector: a local web page over the store (`avasam inspect`, `listen`)."""
