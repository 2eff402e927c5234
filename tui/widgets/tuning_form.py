"""The watsonx tuning parameters as a form: one field per TuningConfig field, with its range."""

from __future__ import annotations

import typing

from pydantic import ValidationError
from textual.app import ComposeResult
from textual.containers import Grid
from textual.widgets import Input, Label, Select

from router.application.retraining import TuningConfig, describe_error, field_range

# init_text: free text, the business instruction is the sensible default; context, simulated_corrections,
# precedent_chars, init_adapter, init_prompt, train_examples, teacher, cross_teacher, teacher_weight, split_seed: `triage tune` options (a console retrain has no
# retrieval to build a context from, so no precedents to simulate corrections in; trains on all data; starts from and
# distils as the active late prompt's record says, never from paths typed here; keeps the seed's own validation split)
SKIPPED = {"init_text", "context", "simulated_corrections", "precedent_chars", "init_adapter", "init_prompt", "train_examples", "teacher",
           "cross_teacher", "teacher_weight", "split_seed"}


SHORT_NAMES = {"early_stopping_patience": "early stop patience", "selective_backprop": "selective bp"}


def field_label(name: str) -> str:
    """'epochs 1-50': the field and its accepted range (fits a 25-column label)."""
    low, high = field_range(name)
    bounds = f" {low}-{high}" if low is not None and high is not None else ""
    return SHORT_NAMES.get(name, name.replace("_", " ")) + bounds


def form_fields() -> list[str]:
    return [name for name in TuningConfig.model_fields if name not in SKIPPED]


class TuningForm(Grid):
    """Validated tuning parameters; `config()` returns a TuningConfig or raises ValueError naming each bad field."""

    def __init__(self, defaults: TuningConfig | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.defaults = defaults or TuningConfig()

    def compose(self) -> ComposeResult:
        for name in form_fields():
            info = TuningConfig.model_fields[name]
            value = getattr(self.defaults, name)
            yield Label(field_label(name), classes="form-label")
            if typing.get_origin(info.annotation) is typing.Literal:
                options = [(str(o), o) for o in typing.get_args(info.annotation)]
                yield Select(options, value=value, allow_blank=False, id=f"tune-{name}", compact=True, tooltip=info.description)
            elif info.annotation is bool:
                yield Select([("off", False), ("on", True)], value=value, allow_blank=False, id=f"tune-{name}",
                             compact=True, tooltip=info.description)
            else:
                kind = "integer" if info.annotation is int else "number"
                yield Input(str(value), type=kind, id=f"tune-{name}", compact=True, tooltip=info.description)

    def values(self) -> dict:
        """The raw field values; numbers that do not parse are reported by name."""
        values, problems = {}, []
        for name in form_fields():
            widget = self.query_one(f"#tune-{name}")
            if isinstance(widget, Input):
                text = widget.value.strip()
                try:
                    values[name] = int(text) if widget.type == "integer" else float(text)
                except ValueError:
                    problems.append(f"{name}: {text!r} is not a {'whole number' if widget.type == 'integer' else 'number'}")
            else:
                values[name] = widget.value
        if problems:
            raise ValueError("; ".join(problems))
        return values

    def config(self) -> TuningConfig:
        for widget in self.query(Input):
            widget.remove_class("-invalid")
        try:
            return TuningConfig(**self.values())
        except ValidationError as exc:
            for item in exc.errors():
                if item["loc"]:
                    for widget in self.query(f"#tune-{item['loc'][0]}"):
                        widget.add_class("-invalid")
            raise ValueError(describe_error(exc)) from None
        except ValueError as exc:
            for part in str(exc).split("; "):
                name = part.split(":")[0]
                for widget in self.query(f"#tune-{name}"):
                    widget.add_class("-invalid")
            raise

    def set_value(self, name: str, value) -> None:
        widget = self.query_one(f"#tune-{name}")
        if isinstance(widget, Input):
            widget.value = str(value)
        else:
            widget.value = value
