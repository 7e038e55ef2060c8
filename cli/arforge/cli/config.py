"""Where the CLI finds the API: flags, then environment, then files written by ``arforge up``.

=============  ====================  ======================  =============================
value          flag                  environment             file (in the data directory)
=============  ====================  ======================  =============================
data dir       ``--data-dir``        ``ARFORGE_DATA_DIR``    (default: see below)
API URL        ``--api-url``         ``ARFORGE_API_URL``     ``api-url``
API key        ``--api-key``         ``ARFORGE_API_KEY``     ``api-key``
database URL   ``--database-url``    ``ARFORGE_DATABASE_URL`` ``stack.json``
=============  ====================  ======================  =============================

Without ``--data-dir`` or ``ARFORGE_DATA_DIR`` the data directory is the first ``.arforge``
directory found in the current directory or one of its parents (the way git finds
``.git``), so the commands work from anywhere inside the project ``arforge up`` ran in;
when there is none, ``./.arforge``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_API_URL = "http://127.0.0.1:8000"
DATA_DIR_NAME = ".arforge"


class ConfigError(RuntimeError):
    """A needed value was not found anywhere; the message says where it was looked for."""


def find_data_dir(start: Path | None = None) -> Path | None:
    """The nearest ``.arforge`` directory in ``start`` (default: the current directory) or
    one of its parents; ``None`` when there is none up to the root.

    A hit in ``start`` itself is returned as the relative ``Path(".arforge")`` when ``start``
    is the current directory, a hit in a parent as an absolute path.
    """
    here = Path.cwd() if start is None else start
    for d in (here, *here.parents):
        if (d / DATA_DIR_NAME).is_dir():
            return Path(DATA_DIR_NAME) if start is None and d == here else d / DATA_DIR_NAME
    return None


def data_dir(flag: str | None, start: Path | None = None) -> Path:
    """The stack's data directory: ``flag``, else ``ARFORGE_DATA_DIR``, else the nearest
    ``.arforge`` (:func:`find_data_dir` from ``start``), else ``./.arforge``."""
    explicit = flag or os.environ.get("ARFORGE_DATA_DIR")
    if explicit:
        return Path(explicit)
    return find_data_dir(start) or Path(DATA_DIR_NAME)


def where_looked(flag: str | None, start: Path | None = None) -> str:
    """Where the data directory came from, for messages, e.g. ``"looked in /p/.arforge,
    given by --data-dir"``, ``"... found from /p/sub"``, or ``"no .arforge directory in
    /p/sub or any parent; pass --data-dir if the stack runs elsewhere"``."""
    here = Path.cwd() if start is None else start
    if flag:
        return f"looked in {Path(flag).absolute()}, given by --data-dir"
    env = os.environ.get("ARFORGE_DATA_DIR")
    if env:
        return f"looked in {Path(env).absolute()}, given by ARFORGE_DATA_DIR"
    found = find_data_dir(here)
    if found is None:
        return (
            f"no {DATA_DIR_NAME} directory in {here} or any parent; "
            "pass --data-dir if the stack runs elsewhere"
        )
    return f"looked in {(here / found).absolute()}, found from {here}"


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
    data_dir: Path | None = field(default=None, compare=False)

    def require_key(self) -> str:
        """The API key; :class:`ConfigError` saying where it was looked for when none."""
        if not self.api_key:
            looked = f" (no api-key file in {self.data_dir.absolute()})" if self.data_dir else ""
            raise ConfigError(
                "no API key: pass --api-key, set ARFORGE_API_KEY, or start the stack with "
                f"`arforge up` (it writes .arforge/api-key){looked}; "
                "`arforge keys create --tenant NAME` makes a new one."
            )
        return self.api_key


def client_config(dir_flag: str | None, url_flag: str | None, key_flag: str | None) -> ClientConfig:
    """Resolve the API URL and key in the order given in the module docstring."""
    d = data_dir(dir_flag)
    url = url_flag or os.environ.get("ARFORGE_API_URL") or _read(d / "api-url") or DEFAULT_API_URL
    key = key_flag or os.environ.get("ARFORGE_API_KEY") or _read(d / "api-key")
    return ClientConfig(api_url=url.rstrip("/"), api_key=key, data_dir=d)


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
        f"no database URL: start the stack with `arforge up` (it records it in "
        f"{d.absolute() / 'stack.json'}), "
        "set ARFORGE_DATABASE_URL, or pass --database-url."
    )
