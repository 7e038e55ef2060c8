"""``python -m arforge.api``: serve the API with uvicorn on ARFORGE_API_HOST:ARFORGE_API_PORT."""

from __future__ import annotations

import logging

import uvicorn

from arforge.shared.settings import get_settings

from .app import create_app


def main() -> None:
    settings = get_settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_level=settings.log_level.lower(),
        proxy_headers=True,
    )


if __name__ == "__main__":
    main()
