# Test algorithm (stdlib only, no wheels): behaviour chosen by algorithm/mode.
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE}
COPY algorithm/ /opt/algorithm/
RUN useradd --uid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin algorithm
USER 10001:10001
ENTRYPOINT ["python3", "/opt/algorithm/behave.py", "/input", "/output"]
