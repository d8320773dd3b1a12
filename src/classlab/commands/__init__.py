"""One pipeline per command: data in, a run directory out, a ``RunResult`` back.

explore.py, check.py (the dataset doctor), knn.py, train.py, scratch.py (the NumPy MLP's loop),
transfer.py, lr_find.py and workshop.py; results.py writes what every scored run leaves behind.
The CLI (``classlab.cli``) and the Python API (``classlab.api``) are thin layers over these.
"""
