"""churnops core: the ML pipeline, registry, monitoring and automation, free of web frameworks."""

__version__ = "0.1.0"
