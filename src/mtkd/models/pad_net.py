"""PAD-Net (Xu, Ouyang, Wang, Sebe 2018, "PAD-Net: Multi-Tasks Guided Prediction-and-Distillation Network for
Simultaneous Depth Estimation and Scene Parsing", CVPR; Fig. 2, Sec. 3.2–3.3) on any backbone of the registry,
as the HRNet-18 dense-MTL comparisons run it (seed 003 Table 1 / ATRC's Table: 5.02 M parameters on NYUD-v2).

    x        = HRNet-V2 concatenation of the backbone stages at 1/4                         "shared"
    f_t      = conv3×3-BN-ReLU(x → C)          per task: the intermediate (initial) predictions' features
    p0_t     = conv1×1(f_t)                    initial prediction of task t (deep supervision: Output.aux)  "initial.<t>"
    d_t      = f_t + Σ_{s≠t} σ(W^a_{t←s} * f_s) ⊙ (W^m_{t←s} * f_s)   multi-modal distillation (Sec. 3.3, the
               attention-guided message passing variant "C"; ``decoder_base.MultiModalDistillation``)       "head.<t>"
    p_t      = conv1×1(d_t)                    final prediction

Choices the paper leaves open or that differ from it (stated):

- The paper's intermediate tasks may differ from the final ones (depth, parsing, normals, contours for two final
  tasks); here, as in the reference codebases, every model task is also an intermediate task.
- Widths: C = ``decoder_channels`` (67 = 270/4 on HRNet-18, the reference head's width; set by the recipes). The
  paper's decoders are deconvolution stacks on a ResNet/AlexNet front end; on HRNet the features are already at 1/4,
  so the final decoder is the 1×1 classifier, as in the HRNet comparisons.
- The gate of a message is computed from the source's features (the authors' MTL survey code), not the target's.
- Initial predictions are scored with the task's own loss after upsampling to the label (``loss.aux_weight``; the
  paper weights the intermediate losses by λ, 1 in the reference code).
"""

from __future__ import annotations

from torch import nn

from mtkd.models.decoder_base import DecoderModel, InitialPredictions, MultiModalDistillation


class PADNet(DecoderModel):
    arch = "pad_net"

    def __init__(self, backbone, tasks, **kw):
        super().__init__(backbone, tasks, **kw)
        C = self.channels
        self.initial = InitialPredictions(self.tasks, self.neck.channels, C)
        self.distill = MultiModalDistillation(self.tasks, C)
        self.final_logits = nn.ModuleDict({t: nn.Conv2d(C, c, 1) for t, c in self.tasks.items()})

    def decode(self, stages, shared, features):
        feats, initial = self.initial(shared)
        distilled = self.distill(feats)
        preds = {}
        for t in self.tasks:
            features[f"initial.{t}"] = feats[t]
            features[f"head.{t}"] = distilled[t]
            preds[t] = self.final_logits[t](distilled[t])
        return preds, {t: (initial[t],) for t in self.tasks}


__all__ = ["PADNet"]
