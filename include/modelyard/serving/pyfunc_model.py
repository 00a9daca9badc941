"""MLflow models-from-code entry of every registered version (see ``modelyard.serving.pyfunc``)."""

import mlflow

from modelyard.serving.pyfunc import ChatModel

mlflow.models.set_model(ChatModel())
