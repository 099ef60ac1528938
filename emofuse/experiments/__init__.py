"""Experiment grids: configs -> cells on cached features -> results.csv -> tables and plots."""

from emofuse.experiments.config import GridConfig, GridConfigError, load_grid_config
from emofuse.experiments.grid_run import GridRun
from emofuse.experiments.runner import run_grid

__all__ = ["GridConfig", "GridConfigError", "GridRun", "load_grid_config", "run_grid"]
