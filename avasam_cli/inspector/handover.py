"""How `listen` hands its inspector what the page needs, in the child's environment (its
page token, the receiver's endpoints, the forward targets and headers), and the page
token itself: kept in the cache folder, so a page left open works across restarts."""

# How `listen` hands its child the token it printed (an environment name, not a secret).
TOKEN_ENV = "AVASAM_INSPECTOR_TOKEN"  # noqa: S105
RECEIVER_ENV = "AVASAM_INSPECTOR_RECEIVER"  # its endpoints, {kind: URL}, as JSON
FORWARD_ENV = "AVASAM_INSPECTOR_FORWARD"  # its forward targets, {kind: URL}, as JSON
HEADERS_ENV = "AVASAM_INSPECTOR_FORWARD_HEADERS"  # its forward headers, [[name, value]]


def page_token() -> str:
    """The page's token: AVASAM_INSPECTOR_TOKEN, else the one kept in the cache folder
    (0600), made once.  Kept so that a page left open, or a bookmarked URL, works again
    when the listener is started again: the page reconnects by itself."""
    import os

    from avasam_cli.inspector.security import new_token
    from avasam_cli.paths import is_too_open, locations, write_secret_file

    if os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV]
    kept = locations().cache_dir / "inspector-token"
    try:
        token = kept.read_text(encoding="utf-8").strip()
    except (FileNotFoundError, UnicodeDecodeError):
        token = ""
    if len(token) < 32 or is_too_open(kept):  # never one that others could have read
        token = new_token()
        write_secret_file(kept, token + "\n")
    return token


def page_url(port: int, token: str) -> str:
    return f"http://127.0.0.1:{port}/?token={token}"
