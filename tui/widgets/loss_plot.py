"""The live loss curve of a retraining job: training loss per update, validation loss per epoch."""

from __future__ import annotations

from textual_plotext import PlotextPlot


class LossPlot(PlotextPlot):
    """Redrawn from the job's progress each time it changes; keeps the numbers it plots for tests."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.steps: list[int] = []
        self.losses: list[float] = []
        self.val_steps: list[int] = []
        self.val_losses: list[float] = []

    def on_mount(self) -> None:
        super().on_mount()
        self.reset()

    def reset(self) -> None:
        self.steps, self.losses, self.val_steps, self.val_losses = [], [], [], []
        self.redraw()

    def show(self, curve: list, epochs_done: list[dict], steps_total: int | None = None,
             epochs: int | None = None) -> None:
        """curve: [[update, loss], ...]; epochs_done: [{"epoch", "loss", "val_loss"}, ...] (val_loss may be null)."""
        self.steps = [int(step) for step, _ in curve]
        self.losses = [float(loss) for _, loss in curve]
        per_epoch = (steps_total / epochs) if steps_total and epochs else None
        done = [e for e in epochs_done if e.get("val_loss") is not None]
        self.val_steps = [round(e["epoch"] * per_epoch) if per_epoch else e["epoch"] for e in done]
        self.val_losses = [float(e["val_loss"]) for e in done]
        self.redraw()

    def redraw(self) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title("loss")
        plt.xlabel("update")
        if self.losses:
            plt.plot(self.steps, self.losses, label="train", marker="braille")
        if self.val_losses:
            plt.plot(self.val_steps, self.val_losses, label="validation", marker="dot")
        self.refresh()
