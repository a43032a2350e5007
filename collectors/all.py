"""Imports every collector module so that each registers its protocol (Telegraf's all.go)."""

from collectors import modbus, mqtt

__all__ = ["modbus", "mqtt"]
