"""Tune a Keras 3 model with shoal (Keras on its torch backend: ``pip install keras``).

A fidelity objective ``fn(config, epochs, state)`` trains ``epochs`` more epochs and returns
``(val_loss, state)``; the state holds the weights (NumPy arrays), so pruners can stop a trial
after any epoch and PBT can copy the best members.

    python examples/keras_example.py --trials 8 --epochs 4
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("KERAS_BACKEND", "torch")  # before keras is imported

import shoal  # noqa: E402
from shoal.space import Categorical, Float, Space  # noqa: E402

SPACE = Space([
    Float("lr", 1e-4, 1e-1, log=True),
    Categorical("units", [32, 64]),
    Float("dropout", 0.0, 0.5),
])
DATA = None


def digits():
    from shoal.data import load_dataset, prepare, train_val_split

    ds = load_dataset("digits")
    p = prepare(ds, train_val_split(ds, seed=0))
    return p.X_train.reshape(len(p.X_train), -1), p.y_train, p.X_val.reshape(len(p.X_val), -1), p.y_val


def build(config: dict):
    import keras

    model = keras.Sequential([
        keras.Input((64,)),
        keras.layers.Dense(int(config["units"]), activation="relu"),
        keras.layers.Dropout(float(config["dropout"])),
        keras.layers.Dense(10),
    ])
    model.compile(optimizer=keras.optimizers.Adam(float(config["lr"])),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return model


def objective(config: dict, epochs: int, state: dict | None = None):
    global DATA
    DATA = DATA or digits()
    X, y, Xv, yv = DATA
    model = build(config)
    if state is not None:
        model.set_weights(state["weights"])
    model.fit(X, y, batch_size=64, epochs=epochs, verbose=0)
    val_loss, _ = model.evaluate(Xv, yv, verbose=0)
    return float(val_loss), {"weights": model.get_weights()}


def main(trials: int = 8, epochs: int = 4, storage: str = "keras.db", strategy: str = "tpe",
         pruner: str = "median", **settings) -> shoal.TuneResult:
    return shoal.tune(objective, space=SPACE, strategy=strategy, pruner=pruner, trials=trials, epochs=epochs,
                      storage=storage, study=f"keras-{strategy}", progress=False, **settings)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--strategy", default="tpe")
    args = ap.parse_args()
    result = main(args.trials, args.epochs, strategy=args.strategy)
    print("best val_loss", result.best_value, result.best_params)
