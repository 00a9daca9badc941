"""modelyard: curated data → QLoRA fine-tune → gated evaluation → MLflow registry stages."""

__version__ = "0.1.0"
