"""Psychrometric formulas used by the rules (pure functions, no I/O)."""

from __future__ import annotations

import math

# Magnus coefficients over water (Alduchov & Eskridge 1996, as given in
# ../shared/docs/domain.md): valid for about -40..50 °C.
MAGNUS_A = 17.625
MAGNUS_B = 243.04  # °C


def dew_point(temperature_c: float, humidity_pct: float) -> float:
    """Dew point in °C of air at ``temperature_c`` and relative humidity ``humidity_pct``.

    Magnus formula over water, a = 17.625, b = 243.04 °C (Alduchov & Eskridge 1996;
    archwatch domain notes, "Dew point"): γ = ln(RH/100) + aT/(b+T), Td = bγ/(a−γ).
    Check values: 20 °C 50 % → 9.26 °C; 10 °C 50 % → 0.05 °C. RH must be in (0, 100].
    """
    if not 0.0 < humidity_pct <= 100.0:
        raise ValueError(f"relative humidity must be in (0, 100], got {humidity_pct}")
    gamma = math.log(humidity_pct / 100.0) + MAGNUS_A * temperature_c / (MAGNUS_B + temperature_c)
    return MAGNUS_B * gamma / (MAGNUS_A - gamma)
