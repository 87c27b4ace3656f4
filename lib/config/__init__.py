"""Configuration: YAML layers in conf/, validated on load (loader.py) into the sections of
sections.py. ``from liftlake.lib.config import load_config, Config, ConfigError`` is the interface."""
from liftlake.lib.config.loader import conf_dir, load_config, model_params, parse_set, warehouse_path
from liftlake.lib.config.sections import Config, ConfigError, check, positive

__all__ = ["Config", "ConfigError", "check", "conf_dir", "load_config", "model_params", "parse_set", "positive",
           "warehouse_path"]
