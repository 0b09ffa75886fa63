"""What every chapter shares: the parameters of the default model (the checkpoint that
chapter 00 trains and the later chapters load), declared once for all of them.

Used by every chapter's parameter schema.
"""

from __future__ import annotations

from mcutils.params import Param

__all__ = ["model_params"]


def model_params(seed_help: str = "seed of the model's training (the checkpoint of chapter 00)"
                 ) -> dict[str, Param]:
    """The default model's parameters and the run settings, in the order of every
    chapter's ``parameters`` cell: dataset, model, training, seed, device, claims, profile."""
    return {
        "dataset": Param("fashion-mnist", "any name in mcutils.data.registry.DATASETS"),
        "model": Param("small_cnn", 'a name in mcutils.models.MODELS, or "torchvision:<arch>"'),
        "num_epochs": Param(2, "training epochs of the default model", range=(1, None)),
        "lr": Param(0.001, "its Adam learning rate", range=(1e-8, 10)),
        "batch_size": Param(128, "its training batch size", range=(1, None)),
        "train_subset": Param(None, "None: the whole training split", range=(1, None),
                              nullable=True),
        "seed": Param(0, seed_help, range=(0, None)),
        "device": Param("cpu", '"auto", "cpu", "cuda", "cuda:N"'),
        "check_claims": Param(True, "assert the expected claims", choices=(True, False)),
        "profile": Param("cpu", "the profile this run belongs to (profiles/NAME.yaml)"),
    }
