"""The dataset doctor's analyses that need more than the data layer: its embedding pass (embeddings.py: a
pretrained backbone's features find shifted and cropped near-duplicates, outliers and neighbour-label
disagreements). It sits beside evaluation (it reuses its label-issue search) and below trained runs; the
``classlab check`` pipeline that runs it is ``classlab.commands.check``."""
