"""The FastAPI recommendation service and real-time event intake."""
