"""The workbench (``classlab serve``): Starlette + Jinja2 + vendored htmx, a thin layer over run folders and the
Python API. Where things are, and where a new page goes:

- app.py: ``create_app`` and ``Workbench``, what every handler shares (folders, caches, jobs, ``page()``);
- routes/: the routes, one module per resource (runs, review, predict, jobs, datasets); a new page is a
  handler in the module of the resource it shows, and a template in templates/;
- forms.py: everything a request may carry, checked in one place (dataset ids, form fields, uploads, the Train
  form's command line); guard.py: who may ask (loopback Host, token, same-origin POSTs) and which run or run
  file a path names;
- views.py: what a page shows, built from run folders; catalog.py (the runs list), images.py (a run's
  images), cards.py (an image card: top classes, Grad-CAM), charts.py (SVG curves), review.py (label
  reviews), collect.py (Make a dataset), jobs.py (the job queue), bundle.py (export as a .zip),
  static_report.py (a run as static HTML);
- recent.py: the one cache kind (the few most recently used entries).
"""
