# ttsprep with Montreal Forced Aligner (MFA is distributed on conda-forge only: it needs Kaldi binaries).
#   docker build -f docker/mfa.Dockerfile -t ttsprep-mfa .
# Pretrained models are downloaded at build time (never at run time), e.g. english_us_arpa.
FROM condaforge/miniforge3:24.9.2-0
RUN apt-get update && apt-get install -y --no-install-recommends espeak-ng \
    && rm -rf /var/lib/apt/lists/*
RUN conda create -y -n mfa -c conda-forge python=3.11 montreal-forced-aligner=3.* && conda clean -afy
ENV PATH=/opt/conda/envs/mfa/bin:$PATH
RUN useradd --create-home ttsprep
WORKDIR /app
COPY pyproject.toml README.md ./
COPY pipelines pipelines
COPY stages stages
COPY aligners aligners
COPY models models
COPY train train
RUN pip install --no-cache-dir "pip<26" \
    && pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu -e '.[train]'
USER ttsprep
RUN mfa model download acoustic english_us_arpa && mfa model download dictionary english_us_arpa
ENV PREFECT_SERVER_ANALYTICS_ENABLED=false MFA_ROOT_DIR=/home/ttsprep/Documents/MFA
ENTRYPOINT ["ttsprep"]
