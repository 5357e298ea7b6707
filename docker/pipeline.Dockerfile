# The ttsprep pipeline (CPU stages, Prefect flows and worker). Build from the repository root:
#   docker build -f docker/pipeline.Dockerfile -t ttsprep .
FROM python:3.11-slim-bookworm
RUN apt-get update && apt-get install -y --no-install-recommends espeak-ng libsndfile1 build-essential \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --create-home ttsprep
WORKDIR /app
COPY pyproject.toml setup.py README.md ./
COPY pipelines pipelines
COPY stages stages
COPY aligners aligners
COPY models models
COPY train train
RUN pip install --no-cache-dir "pip<26" \
    && pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu -e '.[train,dask]' \
    && pip install --no-cache-dir --no-deps resemblyzer==0.1.4
COPY datasets.yaml prefect.yaml ./
USER ttsprep
ENV PREFECT_SERVER_ANALYTICS_ENABLED=false
ENTRYPOINT ["ttsprep"]
CMD ["--help"]
