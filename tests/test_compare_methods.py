"""`triage eval` over several artifacts: one table of methods (size, parameters, accuracy, memory) and a chart."""

from __future__ import annotations

import json

from click.testing import CliRunner

from router.cli import cli

HELD_OUT = [
    ("The lamp arrived in a crushed box.", "Packaging"),
    ("Two of the six glasses were not in the parcel.", "Warehouse, Packaging"),
    ("Support hung up on me twice.", "Service"),
    ("The website ad shows a colour you never made.", "Planning, Marketing"),
]


def invoke(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_eval_compares_a_late_prompt_and_a_lora_adapter_with_the_baselines(tiny_env, tiny_train_file, tmp_path):
    data = tmp_path / "held_out.jsonl"
    data.write_text("".join(json.dumps({"input": i, "output": o}) + "\n" for i, o in HELD_OUT))
    late, lora = tmp_path / "late", tmp_path / "lora"
    common = ["--data", str(tiny_train_file), "--epochs", "2", "--batch-size", "4", "--val-fraction", "0", "--fp32"]
    assert invoke("tune", "--out", str(late), "--method", "late-prompt", "--prompt-layer", "1",
                  "--num-virtual-tokens", "4", *common).exit_code == 0
    assert invoke("tune", "--out", str(lora), "--method", "lora", "--learning-rate", "0.005", *common).exit_code == 0
    out = tmp_path / "eval"
    result = invoke("eval", "--data", str(data), "--model", str(late), "--model", str(lora), "--out", str(out), "--json")
    assert result.exit_code == 0
    methods = json.loads(result.stdout)["methods"]
    assert set(methods) == {"tuned late", "tuned lora", "tfidf", "embedding"}
    assert methods["tuned late"]["method"] == "late-prompt" and methods["tuned lora"]["method"] == "lora"
    assert methods["tuned late"]["artifact_bytes"] < methods["tuned lora"]["artifact_bytes"]
    assert methods["tuned late"]["trainable_parameters"] < methods["tuned lora"]["trainable_parameters"]
    assert 0 < methods["tuned late"]["memory_held_bytes"] < methods["tuned lora"]["memory_held_bytes"], "a prompt, not a copy"
    for row in methods.values():
        assert row["n"] == len(HELD_OUT) and 0.0 <= row["exact_set_accuracy"] <= 1.0
        low, high = row["exact_set_95ci"]
        assert low <= row["exact_set_accuracy"] <= high and high - low > 0.3, "4 complaints say little"
    assert "paired_vs_first" not in methods["tuned late"]
    for name in ("tuned lora", "tfidf", "embedding"):
        pair = methods[name]["paired_vs_first"]
        assert pair["against"] == "tuned late" and pair["wins"] + pair["losses"] <= len(HELD_OUT)
        assert pair["wins"] - pair["losses"] == round(
            (methods[name]["exact_set_accuracy"] - methods["tuned late"]["exact_set_accuracy"]) * len(HELD_OUT))
    assert (out / "methods.png").stat().st_size > 1000 and (out / "metrics.json").is_file()
    table = invoke("eval", "--data", str(data), "--model", str(late), "--model", str(lora), "-s", "tfidf").output
    assert "late-prompt" in table and "lora" in table and "held MB" in table and "embedding" not in table
    assert "95% CI" in table and "(first)" in table and " p=" in table
