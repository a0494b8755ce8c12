"""Airflow 3 DAGs (TaskFlow, ``airflow.sdk``) that run the pipeline on a schedule."""
