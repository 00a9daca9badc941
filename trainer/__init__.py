"""modelyard's training job: LoRA/QLoRA supervised fine-tuning, run as ``python -m trainer``.

Standalone on purpose: it runs in its own environment (CUDA torch, Unsloth on GPU workers), so it
imports neither Airflow nor ``modelyard``; its interface is a config file in (the schema in
``trainer.config``, which the library imports), the tracking URI in ``MLFLOW_TRACKING_URI`` and
``<output_dir>/result.json`` out.
"""
