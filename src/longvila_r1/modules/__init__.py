"""LightningModules of the two-stage recipe (and the demo's stage 0, vision-tower pretraining).

Example:
    >>> from longvila_r1.modules import CoTSFTModule
"""

from longvila_r1.modules.grpo import GRPOModule
from longvila_r1.modules.policy_module import VideoPolicyModule
from longvila_r1.modules.sft import CoTSFTModule, response_nll
from longvila_r1.modules.vision_pretrain import VisionPretrainModule

__all__ = ["CoTSFTModule", "GRPOModule", "VideoPolicyModule", "VisionPretrainModule", "response_nll"]
