"""Operating churnops: the ``churnops`` command line, how each service starts, the ``make run``
launcher, and the developer tooling (watcher, pipeline runner). The ML package is :mod:`core`."""
