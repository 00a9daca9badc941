"""Serving: production and canary behind one OpenAI-compatible gateway (``modelyard serve``).

``app``/``gateway`` answer HTTP; ``routing`` picks production or the canary per user;
``watcher`` follows the registry's aliases and swaps loaded versions; ``local_backend`` and
``upstream_backend`` generate (PEFT adapters in-process, or an upstream such as vLLM);
``requestlog`` writes every request and feedback event, ``logreader`` is how later stages
(canary analysis, feedback harvesting) read them; ``pyfunc`` is the MLflow flavor each
registered version carries. Nothing is imported eagerly.
"""
