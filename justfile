# sftloop — the SFT data loop. `just --list` shows the commands; docs/ has a page for each.
set shell := ["bash", "-euo", "pipefail", "-c"]
set positional-arguments := false

export HF_HUB_OFFLINE := "1"
export TRANSFORMERS_OFFLINE := "1"
export HF_DATASETS_OFFLINE := "1"
py := ".venv/bin/python"

# list the commands
default:
    @just --list

# virtualenv, dependencies (torch CPU first) and assets; idempotent, fast the second time
setup:
    bash scripts/setup.sh

# fetch, verify and build the declared assets into $SFTLOOP_HOME (default ~/.cache/sftloop)
assets *ARGS:
    SFTLOOP_SKIP_ASSETS=1 bash scripts/setup.sh
    {{py}} -m sftloop.assets fetch {{ARGS}}

# the whole loop: curate -> train -> vLLM server -> gate (FAIL is a result, not an error); `just demo in-process`: no vLLM
demo MODE="vllm": setup
    {{py}} -m sftloop.curate run curate/configs/default.toml
    {{py}} -m sftloop.train run train/configs/cpu-smollm2.toml
    if [ "{{MODE}}" = "vllm" ]; then {{py}} -m sftloop.serve start candidate prod base --eager; \
    elif [ "{{MODE}}" != "in-process" ]; then echo "demo: MODE is vllm or in-process, not {{MODE}}" >&2; exit 2; fi
    trap '{{py}} -m sftloop.serve stop >/dev/null' EXIT; rc=0; {{py}} -m sftloop.evaluate gate candidate prod --profile demo || rc=$?; \
    if [ "$rc" -eq 2 ]; then echo "demo: the gate could not evaluate or was inconclusive (see the lines above)" >&2; exit 2; fi; \
    echo "demo: done (gate exit $rc)"; {{py}} -m sftloop.evaluate demo-summary --gate-exit $rc

# run the full test suite (sets everything up first)
test *ARGS: setup
    {{py}} -m pytest {{ARGS}}

# curate a dataset version (default config: the ShareGPT asset)
curate CONFIG="curate/configs/default.toml": setup
    {{py}} -m sftloop.curate run {{CONFIG}}

# LoRA-train on the latest dataset version and register the run as `candidate`; `--nproc N`: N torchrun processes (DDP/FSDP)
train CONFIG="train/configs/cpu-smollm2.toml" *ARGS: setup
    {{py}} -m sftloop.train run {{CONFIG}} {{ARGS}}

# vLLM server on 127.0.0.1 for registry entries (default candidate prod base), LoRA hot-loaded; Ctrl-C stops (docs/serve.md)
serve *ARGS: setup
    {{py}} -m sftloop.serve run {{ARGS}}

# merge a run's adapter into a safetensors model directory (vLLM-servable)
merge RUN: setup
    {{py}} -m sftloop.train merge {{RUN}}

# may CANDIDATE replace PROD? exit 0 pass, 1 fail, 2 could not evaluate (reports/gate-*/)
gate CANDIDATE="candidate" PROD="prod" *ARGS: setup
    {{py}} -m sftloop.evaluate gate {{CANDIDATE}} {{PROD}} {{ARGS}}

# record the golden set (golden/items + MT-Bench/IFBench ids) as a new frozen version
golden-freeze NOTE="": setup
    {{py}} -m sftloop.evaluate golden-freeze --note "{{NOTE}}"

# local Argilla for review: Redis + argilla-server (sql search engine) + worker on 127.0.0.1; Ctrl-C stops
review-server *ARGS: setup
    {{py}} -m sftloop.curate.review server {{ARGS}}

# push a review queue: sample-qa [DATASET] | near-dups [DATASET] | failures REPORT_DIR
review-push QUEUE *ARGS: setup
    {{py}} -m sftloop.curate.review push {{QUEUE}} {{ARGS}}

# apply a queue's submitted responses: sample-qa -> new dataset version, near-dups -> labels, failures -> mined records
review-pull QUEUE *ARGS: setup
    {{py}} -m sftloop.curate.review pull {{QUEUE}} {{ARGS}}

# The mining demo, declared once: the dataset `just curate` writes (curate/configs/default.toml) gives held-out
# prompts and is the drift reference; `base` (SmolLM2-135M) judges, and it grades everything between ~1.1 and
# ~2.3 on the 1-5 scale (measured on the demo logs), so 1.5 flags its lowest quarter (a real judge: the default 2.5).
demo_dataset := "data/datasets/sharegpt-demo"
demo_logs := "data/logs/demo"
demo_mine := "'" + demo_logs + "/*.jsonl' --reference " + demo_dataset + " --judge base --judge-threshold 1.5"

# demo production logs: the prod model answers held-out prompts, judge-graded, feedback SIMULATED (data/logs/demo/)
demo-logs *ARGS: setup
    {{py}} -m sftloop.curate.mine demo-logs --dataset {{demo_dataset}} --out {{demo_logs}} {{ARGS}}

# mine one ISO week of logs (no LOGS: the demo logs with the demo judge, last full week) -> reports/mine-<week>/ + the Argilla failures queue
mine *ARGS: setup
    {{py}} -m sftloop.curate.mine run {{ if ARGS =~ '^(-|$)' { demo_mine + " " + ARGS } else { ARGS } }}
