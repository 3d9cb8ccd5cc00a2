"""Tune a PyTorch Lightning module with shoal (``pip install lightning``).

The objective takes ``(config, trial)``: a callback reports the validation loss after each epoch
(``trial.report``) and stops the run when the study's pruner says so (``optuna.TrialPruned``).

    python examples/lightning_example.py --trials 8 --epochs 4
"""

from __future__ import annotations

import argparse

import shoal
from shoal.space import Float, Space

SPACE = Space([Float("lr", 1e-4, 1e-1, log=True), Float("weight_decay", 1e-6, 1e-2, log=True)])


def loaders(batch_size: int = 64):
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from shoal.data import load_dataset, prepare, train_val_split

    ds = load_dataset("digits")
    p = prepare(ds, train_val_split(ds, seed=0))
    t = lambda X, y: TensorDataset(torch.as_tensor(X.reshape(len(X), -1), dtype=torch.float32),  # noqa: E731
                                   torch.as_tensor(y))
    return (DataLoader(t(p.X_train, p.y_train), batch_size=batch_size, shuffle=True),
            DataLoader(t(p.X_val, p.y_val), batch_size=512))


def make_module(config: dict):
    import lightning.pytorch as pl
    import torch
    from torch import nn

    class Classifier(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))

        def training_step(self, batch, _):
            x, y = batch
            return nn.functional.cross_entropy(self.net(x), y)

        def validation_step(self, batch, _):
            x, y = batch
            self.log("val_loss", nn.functional.cross_entropy(self.net(x), y))

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=config["lr"], weight_decay=config["weight_decay"])

    return Classifier()


def objective(config: dict, trial) -> float:
    import lightning.pytorch as pl
    import optuna

    class Report(pl.Callback):
        def on_validation_epoch_end(self, trainer, module):
            if trainer.sanity_checking:
                return
            trial.report(float(trainer.callback_metrics["val_loss"]), trainer.current_epoch + 1)
            if trial.should_prune():
                raise optuna.TrialPruned()

    train, val = loaders()
    trainer = pl.Trainer(max_epochs=EPOCHS, callbacks=[Report()], logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         accelerator="cpu", devices=1)
    trainer.fit(make_module(config), train, val)
    return float(trainer.callback_metrics["val_loss"])


EPOCHS = 4


def main(trials: int = 8, epochs: int = 4, storage: str = "lightning.db", pruner: str = "median") -> shoal.TuneResult:
    global EPOCHS
    EPOCHS = epochs
    return shoal.tune(objective, space=SPACE, strategy="tpe", pruner=pruner, trials=trials, epochs=epochs,
                      storage=storage, study="lightning", progress=False)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=4)
    args = ap.parse_args()
    result = main(args.trials, args.epochs)
    print("best val_loss", result.best_value, result.best_params)
