"""The undefended model: the reference every defense is compared with."""

from bench.api import Defense, DefenseInfo, register_defense


@register_defense
class NoDefense(Defense):
    info = DefenseInfo(name="none", kind="none", description="No defense: the model as it is.")
