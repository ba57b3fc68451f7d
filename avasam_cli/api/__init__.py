"""The Avasam seller API: the client, its token cache and its error mapping."""
