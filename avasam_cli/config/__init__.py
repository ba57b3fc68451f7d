"""Profiles in `config.toml`, and where each effective value comes from: the registry of
settings (`fields`), their normalizers (`normalize`), the file (`file`) and the
precedence (`resolve`).  The names the rest of the program uses are here.

Precedence for every value: command-line flag > environment > profile > default.
"""

from avasam_cli.config.fields import (
    BY_NAME,
    DEFAULTS,
    ENV_VARS,
    FIELD_TYPES,
    FIELDS,
    LABELS,
    NORMALIZERS,
    PROMPTED_FIELDS,
    REGISTRY,
    SECRET_FIELDS,
    Field,
    shown_value,
    typed_value,
)
from avasam_cli.config.file import DEFAULT_PROFILE, PROFILE_ENV, ConfigFile, check_profile_name
from avasam_cli.config.normalize import (
    MIN_TOKEN_BYTES,
    PASTE_INSTRUCTION,
    audiences,
    check_base_url_transport,
    generate_verification_token,
    mask,
    normalize_base_url,
    store_location,
    token_length_warning,
)
from avasam_cli.config.resolve import (
    Setting,
    Settings,
    check_profile_exists,
    choose_profile,
    resolve,
)

__all__ = [
    "BY_NAME", "DEFAULTS", "DEFAULT_PROFILE", "ENV_VARS", "FIELDS", "FIELD_TYPES", "LABELS",
    "MIN_TOKEN_BYTES", "NORMALIZERS", "PASTE_INSTRUCTION", "PROFILE_ENV", "PROMPTED_FIELDS",
    "REGISTRY", "SECRET_FIELDS", "ConfigFile", "Field", "Setting", "Settings", "audiences",
    "check_base_url_transport", "check_profile_exists", "check_profile_name", "choose_profile",
    "generate_verification_token", "mask", "normalize_base_url", "resolve", "shown_value",
    "store_location", "token_length_warning", "typed_value",
]  # fmt: skip
