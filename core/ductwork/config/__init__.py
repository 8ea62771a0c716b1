"""Product config: models, loading, env resolution, secret references."""

from ductwork.config.durations import Duration, parse_duration
from ductwork.config.loader import DEFAULT_CONFIG, ENV_VAR, Config, ResolvedResource
from ductwork.config.models import Product

__all__ = [
    "DEFAULT_CONFIG",
    "ENV_VAR",
    "Config",
    "Duration",
    "Product",
    "ResolvedResource",
    "parse_duration",
]
