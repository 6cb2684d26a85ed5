# One image; the api and the workers differ by command (see docker-compose.yml).
# For GPU workers build FROM an image with CUDA and install the matching torch wheel
# (e.g. --build-arg TORCH_SPEC="torch==2.13.0" --build-arg TORCH_INDEX=<your CUDA wheel index>).
FROM python:3.11-slim

ARG TORCH_SPEC="torch==2.13.0"
ARG TORCH_INDEX=""
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    TUNESERVE_DATA_DIR=/data

RUN apt-get update && apt-get install -y --no-install-recommends build-essential curl \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /srv/tuneserve
RUN if [ -n "$TORCH_INDEX" ]; then pip install --no-cache-dir "$TORCH_SPEC" --index-url "$TORCH_INDEX"; \
    else pip install --no-cache-dir "$TORCH_SPEC"; fi
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY worker ./worker
COPY migrations ./migrations
RUN pip install --no-cache-dir .

RUN useradd --create-home --uid 1000 tuneserve && mkdir -p /data && chown tuneserve /data
USER tuneserve
VOLUME ["/data"]
EXPOSE 8000
CMD ["sh", "-c", "tuneserve migrate && uvicorn app.main:app --host 0.0.0.0 --port 8000"]
