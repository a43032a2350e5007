"""Alerting: rules from the archive standards, an alert lifecycle with acknowledgement,
grouping, inhibition, silences, and delivery through apprise with a durable outbox.

Laid out like Prometheus Alertmanager's concepts: ``rules`` and ``evaluators`` turn
readings into Conditions; ``lifecycle`` keeps one Alert per fingerprint; ``dispatch``
groups and repeats; ``inhibit`` and ``silence`` mute; ``outbox`` and ``notifiers`` deliver.
"""
