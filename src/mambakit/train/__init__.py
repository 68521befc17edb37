"""mambakit.train: one generic trainer for every generator in the toolkit.

```python
trainer = Trainer(model, loss_fn, train_data, config=TrainConfig(max_steps=1000), out_dir=run)
summary = trainer.fit()   # resumes from `run` if a checkpoint is there
model = type(model).from_pretrained(run)
```
"""

from mambakit.train.config import TrainConfig, cosine_with_warmup
from mambakit.train.ema import EMA
from mambakit.train.trainer import (
    FitSummary,
    Trainer,
    build_param_groups,
    last_logged,
    move_to_device,
    unwrap_model,
)

__all__ = [
    "EMA",
    "FitSummary",
    "TrainConfig",
    "Trainer",
    "build_param_groups",
    "cosine_with_warmup",
    "last_logged",
    "move_to_device",
    "unwrap_model",
]
