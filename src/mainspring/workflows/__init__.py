"""Workflows (M7): chains, groups and chords of tasks, defined as data, run on Celery canvas.

``definition`` parses and validates a definition (tree or DAG form) into a typed tree;
``builder`` writes the same definitions from Python; ``compile`` turns a tree into Celery
signatures whose task ids are known up front; ``progress`` derives each step's state and the
workflow's outcome from the stored runs; ``hooks`` is what the recorder calls after each
batch it writes.
"""
