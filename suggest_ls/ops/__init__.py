"""Operations: loading and reloading the backend, status, the monitor and its alerts, metrics and the
health/metrics HTTP endpoint."""
