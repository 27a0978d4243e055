"""``TeacherClassifierModule``: trains the saferlearn ``UCStubModel`` of one or more teachers, stacked."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import stack_module_state, vmap

from pate_lightning.classifiers.model import UCStubModel, ucstub_forward
from pate_lightning.stacked.module import StackedTeacherModule
from pate_lightning.counter_streams import TeacherStreams, keep_mask
from pate_lightning.seeding import Stream, stream_seed
from pate_lightning.classifiers.loading import load_classifier, normalization_from_name

DROPOUT1, DROPOUT2 = 0.25, 0.5  # saferlearn's rates


def _key(name: str) -> str:
    return name.replace(".", "__")  # ParameterDict keys cannot hold dots


class TeacherClassifierModule(StackedTeacherModule):
    """One ``UCStubModel`` per teacher, trained on the teacher's own shard; loss summed over teachers.

    The K teachers' weights are stacked and run with ``vmap``; Adam acts elementwise, and initial
    weights and dropout masks come from each teacher's own generators, so teacher k trained in a
    group follows the same path as trained alone. ``vmap`` and grouped convolutions were measured
    within 10% of each other on a 2-core CPU (40-48 ms per teacher-step at K = 1 and 4, 65-85 ms at
    K = 16, where the stacked activations leave the cache), so the stage's CPU group size is 4.

    Args:
        teacher_ids: the teachers this module trains (set by the runner; default ``[0]``).
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        normalization: input normalization applied to [0, 1] images (``mnist`` or ``half``).
        seed: base seed; teacher k draws from streams of (seed, k).
        test_examples: how many test images (the first ones) ``report.json``'s accuracy is measured on;
            None for the whole test set. Evaluating 10,000 images costs a 240-image teacher as much as
            ~14 epochs of training, so short runs (the demo) measure on fewer.
        public_init: a ``trained_nets`` folder whose teacher 0 is a ``UCStubModel`` trained on public data only
            (font renders: ``fit`` on ``font_digits_small`` with one teacher); every teacher starts from its
            weights instead of its own random ones, so one epoch on a 240-image shard already gives a useful
            teacher. Reads no private data, so it costs no privacy. None: random initialisation.
    """

    stage = "teacher_classifier"
    EPOCH_METRICS = ("loss", "accuracy")
    GENERATORS = ("dropout",)

    def __init__(
        self,
        teacher_ids: Optional[list[int]] = None,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        normalization: str = "mnist",
        seed: int = 42,
        test_examples: Optional[int] = None,
        public_init: Optional[str] = None,
    ) -> None:
        super().__init__()
        if test_examples is not None and test_examples < 1:
            raise ValueError(f"test_examples must be >= 1 or null (the whole test set), got {test_examples}")
        self.normalize = normalization_from_name(normalization)
        self.save_hyperparameters()
        self.teacher_ids = list(teacher_ids) if teacher_ids is not None else [0]
        start = load_classifier(public_init, 0).state_dict() if public_init is not None else None
        models = []
        for teacher_id in self.teacher_ids:
            # nn.Conv2d/nn.Linear initialise from the global RNG: scope it to the teacher's INIT stream
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(stream_seed(seed, teacher_id, Stream.INIT))
                models.append(UCStubModel())
            if start is not None:
                models[-1].load_state_dict(start)
        stacked, _ = stack_module_state(models)
        self.stacked = nn.ParameterDict({_key(n): nn.Parameter(t.detach().clone()) for n, t in stacked.items()})
        self.dropout = TeacherStreams(seed, self.teacher_ids, Stream.DROPOUT)
        self._init_epoch_sums()

    def params(self) -> dict[str, torch.Tensor]:
        return {k.replace("__", "."): v for k, v in self.stacked.items()}

    def member_state_dict(self, k: int) -> dict[str, torch.Tensor]:
        """Teacher k's weights as a plain ``UCStubModel`` state_dict (saferlearn's names and shapes)."""
        return {name: tensor[k].detach().clone().cpu() for name, tensor in self.params().items()}

    def _masks(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Every teacher's two dropout masks, scaled by 1 / (1 - p), drawn on the device in two calls whatever K is."""
        keys = self.dropout.on(self.device)
        keep1 = keep_mask(keys, self.dropout.next_counter(), (batch_size, 64, 12, 12), DROPOUT1)  # (K, B, 64, 12, 12)
        keep2 = keep_mask(keys, self.dropout.next_counter(), (batch_size, 128), DROPOUT2)  # (K, B, 128)
        return keep1.float().div_(1 - DROPOUT1), keep2.float().div_(1 - DROPOUT2)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Evaluation: images (K, B, 1, 28, 28) in [0, 1] -> log-probabilities (K, B, 10), no dropout."""
        k, b = images.shape[:2]
        ones1 = torch.ones(k, b, 64, 12, 12, device=images.device)
        ones2 = torch.ones(k, b, 128, device=images.device)
        return vmap(ucstub_forward)(self.params(), self.normalize(images), ones1, ones2)

    def _shared_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        images, labels = batch  # (K, B, 1, 28, 28), (K, B)
        keep1, keep2 = self._masks(images.shape[1])
        log_probs = vmap(ucstub_forward)(self.params(), self.normalize(images), keep1, keep2)  # (K, B, 10)
        loss = F.nll_loss(log_probs.flatten(0, 1), labels.flatten(), reduction="none").view_as(labels).mean(1)  # (K,)
        accuracy = (log_probs.argmax(-1) == labels).float().mean(1)  # (K,)
        self._accumulate([loss, accuracy], labels.shape[1])
        return loss.sum(), {"loss": loss.mean(), "accuracy": accuracy.mean()}
