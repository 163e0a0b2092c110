# Test algorithm (stdlib only, no wheels): behaviour chosen by algorithm/mode.
# The algorithm's files come last: every behave image shares the layers above its COPY (one cached
# RUN for all of them), so each build makes only its own COPY layer and starts no container.
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE}
RUN useradd --uid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin algorithm
USER 10001:10001
ENTRYPOINT ["python3", "/opt/algorithm/behave.py", "/input", "/output"]
COPY algorithm/ /opt/algorithm/
