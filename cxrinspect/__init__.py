"""cxrinspect: inspect chest-radiograph classifiers for backdoors."""

__version__ = "0.1.0"
