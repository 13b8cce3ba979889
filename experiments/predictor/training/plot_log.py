"""Training curves of a predictor run's log.csv (rolling mean over 25 steps): loss, bpp, task loss, mean q.

python experiments/predictor/training/plot_log.py RUN/log.csv OUT.png
"""

import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

df = pd.read_csv(sys.argv[1])
fig, axes = plt.subplots(1, 4, figsize=(16, 3.2))
for ax, col in zip(axes, ["loss", "bpp", "task_loss", "mean_q"]):
    ax.plot(df.step, df[col], alpha=0.25, lw=0.8)
    ax.plot(df.step, df[col].rolling(25, min_periods=1).mean(), lw=1.6)
    ax.set_title(col)
    ax.set_xlabel("step")
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=100)
