# The monitor on CPU: `docker build -t monitor .`, then `docker compose up` (compose.yaml) or
# `docker run -v monitor-data:/app/data monitor` (one process on SQLite). tests/test_image.py installs what this copies.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    PIP_NO_CACHE_DIR=1

RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0

# The package, migrations and model included, installed as any user would install it; the sources go afterwards.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY monitor ./monitor
RUN pip install . && rm -rf /src

# What the commands read at run time: feeds.yaml and the topic's training file, which it names relative to itself.
WORKDIR /app
COPY feeds.yaml ./
COPY eval ./eval
RUN useradd --create-home --uid 10001 monitor \
    && mkdir -p /app/data && chown monitor:monitor /app/data

USER monitor
VOLUME ["/app/data"]
# Healthy: the database answers and its schema is the newest (any role; the archive's compose service asks /readyz).
HEALTHCHECK --interval=60s --timeout=30s --start-period=60s --retries=3 CMD ["monitor", "migrate", "--check"]
# The archive's port, served when the container runs `monitor serve --host 0.0.0.0` (compose.yaml's archive).
EXPOSE 8000
CMD ["monitor", "run"]
