"""Where the CLI finds the API: flags, then environment, then files written by ``arforge up``.

=============  ====================  ======================  =============================
value          flag                  environment             file (in the data directory)
=============  ====================  ======================  =============================
data dir       ``--data-dir``        ``ARFORGE_DATA_DIR``    (default ``./.arforge``)
API URL        ``--api-url``         ``ARFORGE_API_URL``     ``api-url``
API key        ``--api-key``         ``ARFORGE_API_KEY``     ``api-key``
database URL   ``--database-url``    ``ARFORGE_DATABASE_URL`` ``stack.json``
=============  ====================  ======================  =============================
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_API_URL = "http://127.0.0.1:8000"


class ConfigError(RuntimeError):
    """A needed value was not found anywhere; the message says where it was looked for."""


def data_dir(flag: str | None) -> Path:
    """The stack's data directory."""
    return Path(flag or os.environ.get("ARFORGE_DATA_DIR") or ".arforge")


def _read(path: Path) -> str | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return text or None


@dataclass(frozen=True)
class ClientConfig:
    """Resolved API endpoint and key."""

    api_url: str
    api_key: str | None

    def require_key(self) -> str:
        if not self.api_key:
            raise ConfigError(
                "no API key: pass --api-key, set ARFORGE_API_KEY, or start the stack with "
                "`arforge up` (it writes .arforge/api-key); `arforge keys create --tenant NAME` "
                "makes a new one."
            )
        return self.api_key


def client_config(dir_flag: str | None, url_flag: str | None, key_flag: str | None) -> ClientConfig:
    """Resolve the API URL and key in the order given in the module docstring."""
    d = data_dir(dir_flag)
    url = url_flag or os.environ.get("ARFORGE_API_URL") or _read(d / "api-url") or DEFAULT_API_URL
    key = key_flag or os.environ.get("ARFORGE_API_KEY") or _read(d / "api-key")
    return ClientConfig(api_url=url.rstrip("/"), api_key=key)


def database_url(dir_flag: str | None, url_flag: str | None) -> str:
    """The database of the stack, for ``arforge keys create``."""
    if url_flag:
        return url_flag
    if os.environ.get("ARFORGE_DATABASE_URL"):
        return os.environ["ARFORGE_DATABASE_URL"]
    d = data_dir(dir_flag)
    raw = _read(d / "stack.json")
    if raw:
        try:
            url = json.loads(raw).get("database_url")
        except ValueError:
            url = None
        if url:
            return str(url)
    raise ConfigError(
        f"no database URL: start the stack with `arforge up` (it records it in {d}/stack.json), "
        "set ARFORGE_DATABASE_URL, or pass --database-url."
    )
