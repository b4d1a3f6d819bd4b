import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from tweeteval import all_tweets  # noqa: E402


def test_all_tweets_reads_every_task_once(shared_data, tmp_path):
    tweets = all_tweets(shared_data)
    assert 150_000 < len(tweets) < 156_000
    assert len(set(tweets)) == len(tweets) and all(t == t.strip() and t for t in tweets)
    task = tmp_path / "tweeteval" / "datasets" / "demo"
    task.mkdir(parents=True)
    (task / "train_text.txt").write_text("a tweet \n\nanother\na tweet\n", encoding="utf-8")
    (task / "train_labels.txt").write_text("0\n1\n", encoding="utf-8")
    assert all_tweets(tmp_path) == ["a tweet", "another"]
