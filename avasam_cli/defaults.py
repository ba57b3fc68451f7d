"""Default values shown in `--help`: a module with no imports, so the CLI starts fast."""

DEFAULT_BASE_URL = "https://app.avasam.com"
DEFAULT_LISTEN_HOST = "127.0.0.1"
DEFAULT_LISTEN_PORT = "8787"
DEFAULT_WEBHOOK_PATHS = {"stock": "/webhooks/stock", "price": "/webhooks/price"}
DEFAULT_MAX_BODY_SIZE = 1024 * 1024
# exp / nbf / iat are checked when present, with this tolerance for clock drift (seconds).
DEFAULT_LEEWAY = 60.0
