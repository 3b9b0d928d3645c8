"""The ingestion HTTP API (SPEC section 5): `create_app` / `create_app_from_env` build
the FastAPI app, `run_server` serves it with uvicorn. Dagster-free."""

from .app import create_app, create_app_from_env, run_server
from .config import ApiOptions, ConfigError

__all__ = ["ApiOptions", "ConfigError", "create_app", "create_app_from_env", "run_server"]
