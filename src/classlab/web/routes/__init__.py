"""The workbench's routes, one module per resource, each a ``routes(bench)`` list of thin handlers:

- runs.py: the runs list, a run's page, files, images, confusion cells and image cards, and what is done to a
  run (explain, evaluate on other data, export, compare runs);
- review.py: reviewing a run's suspected label issues, and retraining with the corrections;
- predict.py: predicting on uploaded images with a run's model;
- jobs.py: the Train page, and starting, watching and cancelling jobs;
- datasets.py: the data page and the Make-a-dataset pages;
- manage.py: a run's name and note, the trash and restoring from it.

A new page goes in the module of the resource it shows; what it accepts is checked in ``web/forms.py``, what it
shows is built in ``web/views.py``, and its template is ``web/templates/<page>.html``.
"""

from __future__ import annotations

from starlette.routing import Route

from . import datasets, jobs, manage, predict, review, runs


def all_routes(bench) -> list[Route]:
    return (runs.routes(bench) + review.routes(bench) + predict.routes(bench) + jobs.routes(bench)
            + datasets.routes(bench) + manage.routes(bench))
