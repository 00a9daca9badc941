-- MLflow's tracking and registry tables live beside Airflow's, in their own database.
CREATE DATABASE mlflow OWNER airflow;
