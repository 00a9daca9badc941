"""MLflow models-from-code entry of every registered version (see ``modelyard.serving.chat``)."""

import mlflow

from modelyard.serving.chat import ChatModel

mlflow.models.set_model(ChatModel())
