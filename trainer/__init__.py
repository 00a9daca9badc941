"""modelyard's training job: LoRA/QLoRA supervised fine-tuning, run as ``python -m trainer``.

Standalone on purpose: it runs in its own environment (CUDA torch, Unsloth on GPU workers), so it
imports neither Airflow nor ``modelyard``; its only interface is a config file in and
``<output_dir>/result.json`` out.
"""
