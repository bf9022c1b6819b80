"""Worker processes (``[mgmt] workers = N``): the ``pool`` in the main process, the worker
``process`` that answers cache hits and refusals, and the ``messages`` they exchange. It imports
:mod:`acmems.http`, :mod:`acmems.backends` (a worker reads the same stores) and the layers below.
"""
