"""emofuse: data-efficient multimodal (speech + text) emotion recognition, Korean first.

The data flow, one module per step:
corpus -> splits -> sampling -> features (encoders) -> model/train -> bundle -> predict/serve.
"""

__version__ = "0.1.0"
