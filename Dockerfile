# The monitor on CPU: `docker build -t monitor . && docker run -v monitor-data:/app/data monitor`
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /app
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0

COPY pyproject.toml README.md alembic.ini feeds.yaml ./
COPY monitor ./monitor
COPY migrations ./migrations
RUN pip install -e . \
    && useradd --create-home --uid 10001 monitor \
    && mkdir -p /app/data && chown monitor:monitor /app/data

USER monitor
VOLUME ["/app/data"]
EXPOSE 8000
CMD ["monitor", "run"]
