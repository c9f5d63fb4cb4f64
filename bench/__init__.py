"""`make bench`: figures for the gateway and the outbound pipeline (no pass/fail).

`run.py` is the entry point; each benchmark lives in its own module (`gateway.py`,
`pipeline.py`), with the load generator (`load.py`), the bare ASGI baseline
(`baseline.py`), RabbitMQ helpers (`rabbit.py`) and the report (`report.py`) beside them.
"""
