# One image for the gateway and the API: `archwatch <command>`.
#   docker compose up            (see docker-compose.yml and README "Running with Docker")
#   docker run ... archwatch:local run /config/site.yaml
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY gateway gateway
COPY collectors collectors
COPY alerting alerting
COPY api api
COPY grafana grafana
COPY examples examples
COPY standards standards
COPY firmware_configs firmware_configs
RUN pip install ".[postgres]"

# A fixed, unprivileged user. /data (spool, state database, signing key) is created owned by
# it, so that a new named volume mounted there starts out writable by the gateway.
RUN useradd --system --uid 10001 --user-group --home-dir /data --no-create-home archwatch \
    && mkdir -p /data /config \
    && chown archwatch:archwatch /data
USER archwatch
ENV ARCHWATCH_DATA_DIR=/data
VOLUME ["/data"]

ENTRYPOINT ["archwatch"]
CMD ["run", "/config/site.yaml"]
