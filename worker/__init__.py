"""The Huey worker: scheduled ingest and retrain checks, and on-demand retrains.

Three modules, as huey's documentation recommends: :mod:`worker.huey_app` builds the Huey
instance from the settings, :mod:`worker.tasks` defines the tasks (front ends import it to
enqueue), :mod:`worker.main` runs the consumer.
"""
