# The ttsprep pipeline (CPU stages, Prefect flows and worker). Build from the repository root:
#   docker build -f docker/pipeline.Dockerfile -t ttsprep .
FROM python:3.11-slim-bookworm
RUN apt-get update && apt-get install -y --no-install-recommends espeak-ng libsndfile1 \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --create-home ttsprep
WORKDIR /app
COPY pyproject.toml README.md ./
COPY pipelines pipelines
COPY stages stages
COPY aligners aligners
COPY models models
COPY train train
RUN pip install --no-cache-dir "pip<26" \
    && pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu -e '.[train,dask]'
COPY datasets.yaml prefect.yaml ./
USER ttsprep
ENV PREFECT_SERVER_ANALYTICS_ENABLED=false
ENTRYPOINT ["ttsprep"]
CMD ["--help"]
