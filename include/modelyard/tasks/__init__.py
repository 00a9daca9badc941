"""The DAG-facing layer: one plain function per Airflow task, JSON-able in and out.

Above the stages (curation, validation, evaluation, registry, serving), which never import
this package nor each other's internals; below the DAG files, which call one function here.
"""
