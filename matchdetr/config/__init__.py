"""The configuration: nested typed dataclasses (``schema``), read from dicts and ``key.sub=value`` strings
(``tree``), with the ranges and relations of their values checked (``checks``)."""

from .schema import *  # noqa: F401,F403
from .schema import Config, apply_override, apply_overrides  # noqa: F401
from .tree import ConfigError, did_you_mean, from_dict, set_value, valid_keys  # noqa: F401
