"""Grafana for archwatch: provisioning and dashboards generated from the site file."""
