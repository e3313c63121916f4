"""Suite-wide settings: one torch thread per test worker (`make test` runs 2 workers on 2 cores)."""

import torch

torch.set_num_threads(1)
