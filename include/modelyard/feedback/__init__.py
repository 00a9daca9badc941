"""The feedback flywheel: what users say about the model in production becomes raw data.

``harvest`` turns one day of the request log into ``<storage>/raw/<ds>/feedback-*.jsonl``;
``policy`` decides, per rated answer, whether it becomes a training record; ``ordering`` is
what ``curate_dataset`` waits on so a date is curated only after its harvest.
"""
