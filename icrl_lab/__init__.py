"""icrl_lab: a teaching and analysis kit for in-context reinforcement learning.

Data flows one way: collect (envs, sources, curricula) -> store (histories) -> train -> evaluate -> probe.
Importing the package registers its gymnasium environments under the ``icrl_lab/`` namespace.
"""
__version__ = "0.1.0"

from . import envs  # noqa: E402  (registers the environments)
