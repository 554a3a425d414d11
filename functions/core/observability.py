"""Structured logs and metrics (powertools).

The Chalice app is created with ``configure_logs=False`` so each line is printed once.
Never log personal data: ids are fine, names/phones/addresses/bodies are not.
"""
from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics

logger = Logger(service="timebank")
metrics = Metrics(namespace="Timebank", service="timebank")
