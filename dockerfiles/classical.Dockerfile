# The classical segmenter. Builds offline: BASE is the local base image (`harness images base`) or,
# where a registry exists, a public one (python:3.11-slim-bookworm).
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE}

# Steps are few and the metadata comes first: every step after the packages' layer costs a commit
# of the whole file system on a slow storage driver (benchmarks/bench_build.py).
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/tmp
WORKDIR /opt/algorithm

# Python packages come from the wheelhouse in the build context; no network is used.
COPY wheels/ /opt/wheels/
COPY algorithm/requirements.txt /opt/algorithm/requirements.txt
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --no-index --find-links /opt/wheels -r /opt/algorithm/requirements.txt \
 && rm -rf /opt/wheels \
 && useradd --uid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin algorithm

COPY algorithm/ /opt/algorithm/
ENTRYPOINT ["/opt/venv/bin/python", "/opt/algorithm/predict.py", "/input", "/output"]
USER 10001:10001
