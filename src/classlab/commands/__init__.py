"""One pipeline per command: data in, a run directory out, a ``RunResult`` back.

explore.py, check.py (the dataset doctor), knn.py, train.py, scratch.py (the NumPy MLP's loop), transfer.py,
lr_find.py, evaluate.py, explain.py, compare.py and workshop.py; cross_validation.py is the one helper two
commands share (train and transfer score a few images per class by k-fold). What a command needs that is not
a command lives below: a run's outputs and tracking in ``classlab.runs``, a run's model and its explainers in
``classlab.trained``, the doctor's embedding pass in ``classlab.checks``. The CLI (``classlab.cli``) and the
Python API (``classlab.api``) are thin layers over these.
"""
