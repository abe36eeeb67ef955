"""The dataset that each data-loading process of a segmentation training run iterates.

Kept apart from ``ecgcore.train.segmenter`` because it must subclass torch's ``IterableDataset`` at import time
(spawned workers unpickle it by name), and the trainer module imports torch only when it trains.
"""

from __future__ import annotations

import cv2
import torch

from ecgcore.train.segmenter import ExampleStream, TrainConfig, stream_seed


class WorkerBatches(torch.utils.data.IterableDataset):
    """Endless batches from one worker's own seeded ``ExampleStream``."""

    def __init__(self, cfg: TrainConfig, exclude: dict[str, set[str]], start_step: int):
        super().__init__()
        self.cfg, self.exclude, self.start_step = cfg, exclude, start_step

    def __iter__(self):
        cv2.setNumThreads(1)
        info = torch.utils.data.get_worker_info()
        worker = info.id if info is not None else 0
        cfg = self.cfg
        stream = ExampleStream(cfg.data, cfg.crop, cfg.crops_per_photo, cfg.lead_crop_p,
                               stream_seed(cfg.seed, self.start_step, worker), self.exclude)
        yield from stream.batches(cfg.batch_size)
