#!/usr/bin/env bash
# Run iomux's fuzz targets: replay the seed corpus, and optionally fuzz for a while.
#
#   fuzz/run.sh                       replay every target's seed corpus once (no fuzzing)
#   FUZZ_SECONDS=60 fuzz/run.sh       replay, then fuzz each target for 60 s
#   fuzz/run.sh chunked cursor        only these targets (parse_request, chunked, cursor)
#
# With a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz --locked`):
#   replay  cargo +nightly fuzz run TARGET fuzz/corpus/TARGET -- -runs=0
#   fuzz    cargo +nightly fuzz run TARGET fuzz/found/TARGET fuzz/corpus/TARGET --
#             -max_total_time=N -dict=fuzz/http.dict
#   (libFuzzer builds: optimized, with AddressSanitizer, debug assertions and overflow checks.)
#   Inputs a fuzzing run finds go to fuzz/found/TARGET (git-ignored), never into the tracked
#   seed corpus; a crash stops that target's run and is saved in fuzz/artifacts/TARGET/ (the
#   output names the file and the commands to reproduce and minimize it).
# Without them (stable only): the corpus is replayed through the same entry points by the stable
#   tests, `cargo test --test fuzz_corpus` (parse_request, chunked: tests/fuzz_corpus.rs) and
#   `cargo test -p iomux-actors --test fuzz_corpus` (cursor: actors/tests/fuzz_corpus.rs); these
#   also run in every `cargo test` / `cargo nextest run`. FUZZ_SECONDS is then ignored, with a
#   note: fuzzing needs libFuzzer, which needs nightly.
#
# Prints one line per target (inputs executed, and execs/s and coverage when fuzzing) and exits
# non-zero when a target crashed or a replay failed (1), or the targets do not build (2).
#
# Environment:
#   FUZZ_SECONDS=N      also fuzz each target for N seconds (default 0: replay only)
#   FUZZ_TOOLCHAIN=T    the nightly toolchain to use (default: nightly)
#   FUZZ_STABLE=1       use the stable fallback even when nightly and cargo-fuzz are there
#   FUZZ_KEEP_GOING=1   when fuzzing, keep going after a crash (libFuzzer -fork=1
#                       -ignore_crashes=1) and count the crashes, instead of stopping at the first
#   FUZZ_ARGS="..."     more libFuzzer arguments for the fuzzing runs (e.g. -max_len=512)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

ALL_TARGETS=(parse_request chunked cursor)
if [ $# -gt 0 ]; then
  targets=("$@")
else
  targets=("${ALL_TARGETS[@]}")
fi
for t in "${targets[@]}"; do
  case " ${ALL_TARGETS[*]} " in
    *" $t "*) ;;
    *) echo "fuzz/run.sh: unknown target '$t' (targets: ${ALL_TARGETS[*]})" >&2; exit 2 ;;
  esac
done
seconds=${FUZZ_SECONDS:-0}
if ! [[ $seconds =~ ^[0-9]+$ ]]; then
  echo "fuzz/run.sh: FUZZ_SECONDS must be a whole number of seconds, not '$seconds'" >&2
  exit 2
fi
toolchain=${FUZZ_TOOLCHAIN:-nightly}
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

log() { printf '==> %s\n' "$*" >&2; }

# One stat::NAME value of a libFuzzer log (-print_final_stats=1), or "?".
stat() { sed -n "s/^stat::$2: *//p" "$1" | tail -n1 | grep . || echo '?'; }

have_nightly() {
  [ "${FUZZ_STABLE:-0}" != 1 ] &&
    rustup run "$toolchain" rustc --version >/dev/null 2>&1 &&
    cargo fuzz --version >/dev/null 2>&1
}

# --- Stable fallback ----------------------------------------------------------------------
if ! have_nightly; then
  if [ "${FUZZ_STABLE:-0}" = 1 ]; then
    log "FUZZ_STABLE=1: replaying the corpus with the stable tests"
  else
    log "no '$toolchain' toolchain or no cargo-fuzz: replaying the corpus with the stable tests"
    log "(for libFuzzer: rustup toolchain install nightly && cargo install cargo-fuzz --locked)"
  fi
  if [ "$seconds" -gt 0 ]; then
    log "FUZZ_SECONDS=$seconds ignored: fuzzing needs nightly and cargo-fuzz"
  fi
  status=0
  for t in "${targets[@]}"; do
    case $t in
      cursor) cmd=(cargo test -p iomux-actors --test fuzz_corpus -- cursor_corpus --exact) ;;
      *) cmd=(cargo test -p iomux --test fuzz_corpus -- "${t}_corpus" --exact) ;;
    esac
    inputs=$(find "fuzz/corpus/$t" -type f | wc -l)
    if RUST_BACKTRACE=0 "${cmd[@]}" >"$logs/$t.log" 2>&1; then
      printf '%-14s ok     %6d inputs replayed (stable: %s)\n' "$t" "$inputs" "${cmd[*]}"
    else
      printf '%-14s FAILED %6d inputs replayed (stable: %s)\n' "$t" "$inputs" "${cmd[*]}"
      sed -n '/panicked at\|seeds failed/,+12p' "$logs/$t.log" | head -40 >&2
      status=1
    fi
  done
  exit "$status"
fi

# --- libFuzzer ------------------------------------------------------------------------------
log "building the fuzz targets (cargo +$toolchain fuzz build)"
if ! cargo "+$toolchain" fuzz build >"$logs/build.log" 2>&1; then
  tail -n 40 "$logs/build.log" >&2
  echo "fuzz/run.sh: the fuzz targets do not build" >&2
  exit 2
fi

status=0
# The panic (or sanitizer error) in a libFuzzer log, and the input it saved.
report_crash() { # LOG
  status=1
  grep -m1 -A1 'panicked at' "$1" >&2 || grep -m1 -A3 'ERROR: ' "$1" >&2 || tail -n 20 "$1" >&2
  grep -m1 'Test unit written to' "$1" >&2 || true
}

# Each distinct panic of the crash files a fuzzing run saved (fork mode logs none of them).
report_crash_files() { # TARGET FILE...
  local t=$1 file
  shift
  for file in "$@"; do
    cargo "+$toolchain" fuzz run "$t" "$file" 2>&1 | grep -m1 -A1 'panicked at\|ERROR: ' |
      tr '\n' ' ' | sed -E 's/ \([0-9]+\)//; s/ *$/\n/'
  done | sort | uniq -c | sed 's/^/    /' >&2
  printf '    reproduce: cargo +%s fuzz run %s FILE; minimize: cargo +%s fuzz tmin %s FILE\n' \
    "$toolchain" "$t" "$toolchain" "$t" >&2
}

for t in "${targets[@]}"; do
  # Replay: every seed once, no mutation.
  if cargo "+$toolchain" fuzz run "$t" "fuzz/corpus/$t" -- -runs=0 -print_final_stats=1 \
    >"$logs/$t.replay.log" 2>&1; then
    printf '%-14s ok     %8s inputs replayed\n' "$t" \
      "$(stat "$logs/$t.replay.log" number_of_executed_units)"
  else
    printf '%-14s CRASH  replaying fuzz/corpus/%s\n' "$t" "$t"
    report_crash "$logs/$t.replay.log"
  fi
done

if [ "$seconds" -gt 0 ]; then
  dict="$PWD/fuzz/http.dict"
  for t in "${targets[@]}"; do
    found="fuzz/found/$t"
    mkdir -p "$found" "fuzz/artifacts/$t"
    args=(-max_total_time="$seconds" -dict="$dict" -print_final_stats=1
      -artifact_prefix="$PWD/fuzz/artifacts/$t/")
    if [ "${FUZZ_KEEP_GOING:-0}" = 1 ]; then
      args+=(-fork=1 -ignore_crashes=1)
    fi
    # shellcheck disable=SC2206 # FUZZ_ARGS is a list of words on purpose
    args+=(${FUZZ_ARGS:-})
    log "fuzzing $t for ${seconds}s"
    fuzz_log="$logs/$t.fuzz.log"
    started=$SECONDS
    cargo "+$toolchain" fuzz run "$t" "$found" "fuzz/corpus/$t" -- "${args[@]}" >"$fuzz_log" 2>&1
    rc=$?
    elapsed=$((SECONDS - started)) # the build is done: this is the fuzzing time
    # Executions: the final stats, or (fork mode, or a run cut short) the last status line.
    execs=$(stat "$fuzz_log" number_of_executed_units)
    rate=$(stat "$fuzz_log" average_exec_per_sec)
    last=$(grep -E '^#[0-9]+' "$fuzz_log" | tail -n1)
    if [ "$execs" = '?' ]; then
      execs=$(sed -E 's/^#([0-9]+).*/\1/' <<<"$last")
      rate=$(sed -nE 's/.*exec\/s: ([0-9]+).*/\1/p' <<<"$last")
    fi
    cov=$(sed -nE 's/.*cov: ([0-9]+).*/\1/p' <<<"$last")
    ft=$(sed -nE 's/.*ft: ([0-9]+).*/\1/p' <<<"$last")
    mapfile -t crashes < <(find "fuzz/artifacts/$t" -newer "$logs" -type f -name 'crash-*')
    summary=$(printf '%10s execs in %ss, %s execs/s, cov %s, ft %s' \
      "${execs:-?}" "$elapsed" "${rate:-?}" "${cov:-?}" "${ft:-?}")
    if [ "$rc" -eq 0 ]; then
      printf '%-14s ok     %s\n' "$t" "$summary"
    else
      printf '%-14s CRASH  %s; %s crash file(s) in fuzz/artifacts/%s/\n' \
        "$t" "$summary" "${#crashes[@]}" "$t"
      status=1
      if [ "${#crashes[@]}" -gt 0 ]; then
        report_crash_files "$t" "${crashes[@]}"
      else
        report_crash "$fuzz_log"
      fi
    fi
  done
fi
exit "$status"
