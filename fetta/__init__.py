"""fetta: a synthesizable generator of a training accelerator for tensorized neural networks."""

__version__ = "0.1.0"
