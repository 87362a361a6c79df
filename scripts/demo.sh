#!/usr/bin/env bash
# `make demo`: the whole loop on CPU with the embedded model (SmolLM2-135M-Instruct) and the local
# GSM8K copy: prepare -> baseline evals -> Dr GRPO -> evals again -> paired compares -> HTML report.
# Each eval runs twice: on GSM8K test questions and on GSM-Symbolic questions (the same kind of
# problems with re-drawn names and numbers, generated offline from reasoning-gym's templates), so
# the demo shows whether what training changed holds on problems it has not seen the numbers of.
# Re-running it resumes: finished evals are reprinted, training continues from its last checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
GSM8K=${GSM8K:-../shared/data/gsm8k}
DATA=${DATA:-data}
OUT=${OUT:-runs/demo}
N=${DEMO_EVAL_N:-128}          # held-out test questions evaluated before and after
SYMBOLIC_N=${DEMO_SYMBOLIC_N:-64}  # GSM-Symbolic questions evaluated before and after (0: none)
TOKENS=${DEMO_MAX_NEW_TOKENS:-192}
# auto everywhere: the eval backend and dtype, and training's precision and generation engine, are
# decided from the machine (src/grpo_gsm8k/hardware.py), printed and recorded in the run files:
# vLLM on CPUs with AVX-512 (bf16 where the CPU has bf16 units, else fp32), transformers + fp32
# on AVX2-only CPUs.
BACKEND=${DEMO_BACKEND:-auto}
RECIPE=${RECIPE:-recipes/cpu-smollm2.yaml}
start=$(date +%s)

step() { printf '\n== %s  (%ds)\n' "$1" "$(($(date +%s) - start))"; }

step "prepare: GSM8K from $GSM8K -> $DATA/"
$BIN/grpo-gsm8k prepare --source "$GSM8K" --out "$DATA"
if [ "$SYMBOLIC_N" -gt 0 ]; then
  step "prepare: $SYMBOLIC_N GSM-Symbolic questions (reasoning-gym, seed 0) -> $DATA/gsm-symbolic/"
  $BIN/grpo-gsm8k prepare --source gsm-symbolic --count "$SYMBOLIC_N" --out "$DATA/gsm-symbolic"
fi

# eval MODEL OUT_PREFIX: the GSM8K questions into OUT_PREFIX, GSM-Symbolic into symbolic-*
evals() {
  $BIN/grpo-gsm8k eval "$1" --data "$DATA/eval.jsonl" --limit "$N" \
    --max-new-tokens "$TOKENS" --backend "$BACKEND" --out "$OUT/eval-$2"
  if [ "$SYMBOLIC_N" -gt 0 ]; then
    step "  the same model on $SYMBOLIC_N GSM-Symbolic questions"
    $BIN/grpo-gsm8k eval "$1" --data "$DATA/gsm-symbolic/eval.jsonl" --limit "$SYMBOLIC_N" \
      --max-new-tokens "$TOKENS" --backend "$BACKEND" --out "$OUT/symbolic-$2"
  fi
}

step "baseline eval: smollm2-135m on the first $N eval questions (greedy, $TOKENS new tokens)"
evals smollm2-135m before

step "train: Dr GRPO with $RECIPE -> $OUT/train"
resume=()
if compgen -G "$OUT/train/checkpoint-*" >/dev/null; then resume=(--resume); fi
$BIN/grpo-gsm8k train --config "$RECIPE" --train_file "$DATA/train.jsonl" \
  --eval_file "$DATA/eval.jsonl" --output_dir "$OUT/train" "${resume[@]}"

step "eval after training: the same $N questions, same settings"
evals "$OUT/train" after

step "compare: GSM8K before vs after, paired on the same questions"
$BIN/grpo-gsm8k compare "$OUT/eval-before" "$OUT/eval-after" --out "$OUT/compare"
runs=("$OUT/eval-before" "$OUT/eval-after" "$OUT/train" "$OUT/compare")
if [ "$SYMBOLIC_N" -gt 0 ]; then
  step "compare: GSM-Symbolic before vs after, paired on the same questions"
  $BIN/grpo-gsm8k compare "$OUT/symbolic-before" "$OUT/symbolic-after" \
    --out "$OUT/compare-symbolic"
  runs+=("$OUT/symbolic-before" "$OUT/symbolic-after" "$OUT/compare-symbolic")
fi

step "report: training curves, every eval, before/after and the reward-hacking watch"
$BIN/grpo-gsm8k report "${runs[@]}" --out "$OUT/report"

step "done"
echo "files:"
for f in "$DATA"/{train.jsonl,eval.jsonl,manifest.json} "$DATA"/gsm-symbolic/{eval,manifest}.* \
  "$OUT"/{eval,symbolic}-before/{samples.jsonl,summary.json} \
  "$OUT"/train/{grpo_gsm8k_config.json,metrics.jsonl,completions.jsonl,model.safetensors} \
  "$OUT"/{eval,symbolic}-after/{samples.jsonl,summary.json} "$OUT"/compare/* \
  "$OUT"/compare-symbolic/* "$OUT"/report/report.json; do
  [ -e "$f" ] && echo "  $f"
done
echo "wall time: $(($(date +%s) - start)) s"
echo "report (opens offline in any browser): $OUT/report/report.html"
