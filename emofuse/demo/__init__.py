"""The built-in demo: a synthetic Korean corpus and `emofuse demo`, the whole pipeline on it."""
