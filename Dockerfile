# One image for the gateway (and, later, the API): `archwatch run /config/site.yaml`.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY gateway gateway
COPY collectors collectors
COPY examples examples
COPY standards standards
COPY firmware_configs firmware_configs
RUN pip install --no-cache-dir ".[postgres]" && useradd --system --home /data archwatch
USER archwatch
ENV ARCHWATCH_DATA_DIR=/data
VOLUME ["/data"]
ENTRYPOINT ["archwatch"]
CMD ["run", "/config/site.yaml"]
