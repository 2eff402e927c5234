"""The live loss curve of a retrain: training loss per update, validation loss per epoch."""

from __future__ import annotations

from textual_plotext import PlotextPlot

from tuning.train import Progress


class LossPlot(PlotextPlot):
    """Redrawn on every progress report; keeps the numbers it plots for tests and the summary."""

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

    def add(self, progress: Progress) -> None:
        if progress.epoch_end:
            if progress.val_loss is not None and progress.val_loss == progress.val_loss:  # not NaN
                self.val_steps.append(progress.step)
                self.val_losses.append(progress.val_loss)
        else:
            self.steps.append(progress.step)
            self.losses.append(progress.loss)
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
