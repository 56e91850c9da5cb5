"""LightningModules of the two-stage recipe.

Example:
    >>> from longvila_r1.modules import CoTSFTModule
"""

from longvila_r1.modules.grpo import GRPOModule
from longvila_r1.modules.policy_module import VideoPolicyModule
from longvila_r1.modules.sft import CoTSFTModule, response_nll

__all__ = ["CoTSFTModule", "GRPOModule", "VideoPolicyModule", "response_nll"]
