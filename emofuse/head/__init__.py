"""The fusion head: its settings, training, the logistic model, calibration, confidence and
the scoring math shared by training, prediction, grids and the service.

Nothing here imports torch at package import: `emofuse.head.config` and
`emofuse.head.confidence` stay light for the CLI and the service.
"""
