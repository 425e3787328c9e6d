"""The same champion served by the frameworks ML teams pick instead of churnops (``make bench``).

Each runs in its own venv (``var/bench-envs/<name>``) with the project on ``PYTHONPATH``; the model
is the champion's bundle exported by ``scripts/bench.py`` (``CHURN_BUNDLE``), scored by
:class:`core.predict.Predictor` (the same validation and threshold rule as churnops, sklearn's
pipeline instead of churnops' compiled trees).
"""
