"""kdbench: a benchmark harness for logit knowledge distillation."""

__version__ = "0.1.0"
