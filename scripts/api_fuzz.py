"""Fuzz the HTTP API with schemathesis against /openapi.json; fails on any 5xx.

    python scripts/api_fuzz.py                 # tiny random model (seconds), temp database
    python scripts/api_fuzz.py --real-model    # the configured model (TRIAGE_BASE_MODEL / embedded SmolLM2)
    python scripts/api_fuzz.py --max-examples 200 -- --phases examples,coverage,fuzzing   # extra st options

Needs the test extra (pip install -e '.[test]'), which brings schemathesis. The server runs on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def tiny_model_env(root: Path) -> dict[str, str]:
    """A tiny random Llama (the real tokenizer) saved to disk, plus a tiny tuned artifact for it."""
    sys.path.insert(0, str(ROOT / "tests"))
    from transformers import AutoTokenizer

    from conftest import TINY_TRAIN, TOKENIZER_DIR, make_tiny_base, tune_tiny
    from router.modelio import load_base_model
    from router.settings import Settings

    tokenizer = AutoTokenizer.from_pretrained(TOKENIZER_DIR)
    model_dir = root / "tiny-base"
    make_tiny_base(tokenizer).model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    train = root / "train.jsonl"
    train.write_text("".join(json.dumps({"input": i, "output": o}) + "\n" for i, o in TINY_TRAIN))
    base = load_base_model(Settings(data_dir=root / "data", base_model=str(model_dir)))
    artifact, _ = tune_tiny(base, train, root / "tiny-prompt", epochs=1)
    return {"TRIAGE_BASE_MODEL": str(model_dir), "TRIAGE_TUNED_MODEL": str(artifact), "TRIAGE_SHOTS_FILE": str(train)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real-model", action="store_true", help="Serve the configured model, not a tiny one.")
    parser.add_argument("--max-examples", type=int, default=50, help="Examples per operation (default 50).")
    parser.add_argument("st_args", nargs="*", help="Extra arguments for `st run` (after --).")
    args = parser.parse_args()
    if shutil.which("st") is None and not (Path(sys.executable).parent / "st").exists():
        print("schemathesis is not installed: pip install -e '.[test]'", file=sys.stderr)
        return 2
    from loadbench import free_port, start_server, stop_server, wait_ready  # scripts/loadbench.py, beside this one

    root = Path(tempfile.mkdtemp(prefix="triage-fuzz-"))
    env = {**os.environ, "TRIAGE_DATA_DIR": str(root / "data"), "TRIAGE_MODEL_POLL_SECONDS": "0"}
    if not args.real_model:
        env.update(tiny_model_env(root))
    cli = [sys.executable, "-c", "from router.cli import main; main()"]
    subprocess.run(cli + ["db", "upgrade"], env=env, check=True, capture_output=True)
    key = subprocess.run(cli + ["keys", "create", "--role", "supervisor", "--name", "fuzzer"], env=env, check=True,
                         capture_output=True, text=True).stdout.strip()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_server(env, port, log_path=root / "server.log")
    try:
        wait_ready(base, key, server)
        st = str(Path(sys.executable).parent / "st") if (Path(sys.executable).parent / "st").exists() else "st"
        cmd = [st, "run", f"{base}/openapi.json", "--header", f"Authorization: Bearer {key}",
               "--checks", "not_a_server_error", "--max-examples", str(args.max_examples),
               "--exclude-path", "/v1/keys/{name}", *args.st_args]
        print("$", " ".join(c if "Bearer" not in c else "Authorization: Bearer ***" for c in cmd), flush=True)
        code = subprocess.run(cmd, env=env, cwd=root).returncode  # its reports stay out of the checkout
    finally:
        stop_server(server)
    log = (root / "server.log").read_text(errors="replace")
    if "Traceback" in log:
        print(f"server tracebacks in {root / 'server.log'}", file=sys.stderr)
        code = code or 1
    return code


if __name__ == "__main__":
    sys.exit(main())
