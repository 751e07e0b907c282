"""A training script that logs to W&B offline the way HF's WandbCallback does
(``train/global_step`` in every row): five rows, then it writes ``ready`` and waits for ``go``,
then five more rows; with an argument it then raises (a crash), else it finishes. Run by
tests/logs/test_wandb.py in a scratch directory."""

import os
import sys
import time

os.environ["WANDB_MODE"] = "offline"; os.environ["WANDB_SILENT"] = "true"
import wandb

run = wandb.init(mode="offline", project="t", config={"learning_rate": 2e-4})
for s in range(1, 6):
    wandb.log({"train/loss": 2.0 - 0.1 * s, "train/global_step": s * 10})
open("ready", "w").close()
while not os.path.exists("go"):
    time.sleep(0.1)
for s in range(6, 11):
    wandb.log({"train/loss": 2.0 - 0.1 * s, "train/global_step": s * 10})
if len(sys.argv) > 1:
    print("Traceback (most recent call last):", file=sys.stderr)
    raise RuntimeError("CUDA error: device-side assert triggered")
wandb.finish()
