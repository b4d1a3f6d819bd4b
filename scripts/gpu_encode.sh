#!/usr/bin/env bash
# The GPU benchmarks as prepared commands: the encoder (scripts/bench_encode.py --device cuda) and a
# whole build against the encoder alone (scripts/bench_pipeline.py).
#
# A GPU machine has neither the TweetEval data, pretrained weights, nor DuckDB and FAISS, so:
#   here, once:             PYTHON=.venv/bin/python scripts/gpu_encode.sh export [DATA_DIR]
#       writes 21000 shuffled TweetEval tweets, one a line, to scripts/gpu_tweets.txt (about 2 MB),
#       and the wheels a build needs beyond PyTorch and transformers (DuckDB, FAISS, msgspec,
#       zstandard, emoji; CPython 3.12, x86-64 Linux, about 50 MB) to scripts/gpu_wheels/; both are
#       git-ignored (the data stays out of the repository): carry them to the GPU machine beside the
#       working tree; DATA_DIR defaults to ../shared/data;
#   on the GPU machine:     scripts/gpu_encode.sh run [more bench_encode.py options]
#       times a randomly initialised RoBERTa-base (the #Encoder's shape) in float32, bfloat16 and
#       float16, ours against the reference loop, on 20000 of those tweets with 500 queries;
#                           scripts/gpu_encode.sh build [more bench_pipeline.py options]
#       installs the wheels into a folder of their own (nothing else changes there) and times
#       `hicl-retrieval build` of 1,000,000 API v1.1 posts made from those tweets, in bfloat16,
#       with 1 and 4 workers, against the same model encoding the same texts alone.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TWEETS=scripts/gpu_tweets.txt
WHEELS=scripts/gpu_wheels

case "${1:-}" in
export)
    "$PYTHON" - "${2:-../shared/data}" "$TWEETS" <<'EOF'
import random, sys
sys.path.insert(0, "scripts")
from tweeteval import all_tweets

tweets = all_tweets(sys.argv[1])
random.Random(0).shuffle(tweets)
with open(sys.argv[2], "w", encoding="utf-8") as out:
    out.writelines(f"{tweet}\n" for tweet in tweets[:21000])
EOF
    echo "wrote $TWEETS: $(wc -l <"$TWEETS") tweets, $(du -h "$TWEETS" | cut -f1)"
    rm -rf "$WHEELS"
    "$PYTHON" -m pip download --quiet --only-binary=:all: --no-deps --python-version 3.12 --implementation cp \
        --abi cp312 --abi abi3 --abi none --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux_2_27_x86_64 --platform manylinux_2_28_x86_64 --platform any -d "$WHEELS" \
        "duckdb==$("$PYTHON" -c 'import duckdb; print(duckdb.__version__)')" \
        "faiss-cpu==$("$PYTHON" -c 'import faiss; print(faiss.__version__)')" msgspec zstandard emoji
    echo "wrote $WHEELS: $(ls "$WHEELS" | wc -l) wheels, $(du -sh "$WHEELS" | cut -f1)"
    ;;
run)
    shift
    [ -s "$TWEETS" ] || { echo "no $TWEETS: run '$0 export' on a machine with TweetEval first" >&2; exit 1; }
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=true
    exec "$PYTHON" scripts/bench_encode.py --device cuda --tweets-file "$TWEETS" --random-model roberta-base \
        --posts 20000 --queries 500 --repeats 3 "$@"
    ;;
build)
    shift
    [ -s "$TWEETS" ] && [ -d "$WHEELS" ] || { echo "no $TWEETS or $WHEELS: run '$0 export' here first" >&2; exit 1; }
    DEPS=${TMPDIR:-/tmp}/hicl-gpu-deps
    "$PYTHON" -m pip install --quiet --no-index --no-deps --target "$DEPS" "$WHEELS"/*.whl
    export PYTHONPATH="$PWD:$DEPS${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
    exec "$PYTHON" scripts/bench_pipeline.py --tweets-file "$TWEETS" --random-model roberta-base --device cuda \
        --dtype bfloat16 --posts 1000000 --workers 1 4 "$@"
    ;;
*)
    echo "usage: $0 export [DATA_DIR] | run [bench_encode.py options] | build [bench_pipeline.py options]" >&2
    exit 2
    ;;
esac
