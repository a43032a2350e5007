#!/bin/bash
# InfluxDB 2.7 image, first start only (after DOCKER_INFLUXDB_INIT_MODE=setup): map the
# InfluxQL database "<bucket>" with retention policy "autogen" to the initial bucket, so
# archwatch's InfluxQL queries (/query?db=<bucket>) reach it. The image has configured the
# influx CLI with the admin token and set DOCKER_INFLUXDB_INIT_BUCKET_ID for this script.
set -euo pipefail

influx v1 dbrp create \
  --bucket-id "${DOCKER_INFLUXDB_INIT_BUCKET_ID}" \
  --db "${DOCKER_INFLUXDB_INIT_BUCKET}" \
  --rp autogen \
  --default \
  --org "${DOCKER_INFLUXDB_INIT_ORG}"
