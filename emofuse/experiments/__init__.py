"""Experiment grids: configs -> cells on cached features -> results.csv -> tables and plots."""

from emofuse.experiments.config import GridConfig, GridConfigError, load_grid_config

__all__ = ["GridConfig", "GridConfigError", "load_grid_config"]
