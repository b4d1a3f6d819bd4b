#!/usr/bin/env bash
# The GPU encoding benchmark (scripts/bench_encode.py --device cuda) as one prepared command.
#
# A GPU machine has neither the TweetEval data nor pretrained weights, so:
#   here, once:             PYTHON=.venv/bin/python scripts/gpu_encode.sh export [DATA_DIR]
#       writes 21000 shuffled TweetEval tweets, one a line, to scripts/gpu_tweets.txt (about 2 MB,
#       git-ignored: the data stays out of the repository; copy it to the GPU machine beside the
#       working tree; DATA_DIR defaults to ../shared/data);
#   on the GPU machine:     scripts/gpu_encode.sh run [more bench_encode.py options]
#       times a randomly initialised RoBERTa-base (the #Encoder's shape) in float32, bfloat16 and
#       float16, ours against the reference loop, on 20000 of those tweets with 500 queries.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TWEETS=scripts/gpu_tweets.txt

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
    ;;
run)
    shift
    [ -s "$TWEETS" ] || { echo "no $TWEETS: run '$0 export' on a machine with TweetEval first" >&2; exit 1; }
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=true
    exec "$PYTHON" scripts/bench_encode.py --device cuda --tweets-file "$TWEETS" --random-model roberta-base \
        --posts 20000 --queries 500 --repeats 3 "$@"
    ;;
*)
    echo "usage: $0 export [DATA_DIR] | run [bench_encode.py options]" >&2
    exit 2
    ;;
esac
