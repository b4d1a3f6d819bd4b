"""Bad settings and bad command lines: one line on stderr, exit status 1, nothing written, no traceback.

The numbers in the test names are the cases of the hardening issue that found them.
"""

import io
import json
import subprocess
import sys
import time

import pytest
from helpers import free_port, write_corpus

from hicl_retrieval import BuildConfig, HiclError, Retriever
from hicl_retrieval.cli import main
from hicl_retrieval.core.config import DeviceConfig, FinetuneConfig, ReaderConfig, TrainConfig
from hicl_retrieval.corpus import Corpus, Post


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_hashencoder):
    root = tmp_path_factory.mktemp("settings")
    corpus = root / "posts.jsonl"
    write_corpus(corpus)
    index = root / "index"
    assert main(["build", str(corpus), "--out", str(index), "--encoder", str(tiny_hashencoder),
                 "--pooling", "pooler", "--quiet"]) == 0
    examples = root / "examples.jsonl"
    examples.write_text("".join(json.dumps({"labels": i % 2, "text": f"football final {i}"}) + "\n"
                                for i in range(4)), encoding="utf-8")
    return root, corpus, index, examples, tiny_hashencoder


def one_line_error(capsys, argv) -> str:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    assert code == 1, captured
    ours = [line for line in captured.err.splitlines() if line.startswith("hicl-retrieval")]
    assert len(ours) == 1 and ours[0].startswith("hicl-retrieval: error: "), captured.err
    assert "Traceback" not in captured.err and captured.err.endswith(ours[0] + "\n")
    return ours[0]


BUILD_CASES = [
    (["--chunk-size", "0"], "--chunk-size must be at least 1, not 0"),  # 3
    (["--batch-size", "0"], "--batch-size must be at least 1, not 0"),  # 8
    (["--threads", "-3"], "--threads must be at least 1, not -3"),  # 8
    (["--threads", "0"], "--threads must be at least 1, not 0"),
    (["--target-recall", "1.5"], "--target-recall must be above 0 and at most 1, not 1.5"),  # 14
    (["--target-recall", "-1"], "--target-recall must be above 0 and at most 1, not -1.0"),  # 14
    (["--target-recall", "nan"], "--target-recall must be a number, not nan"),
    (["--max-memory", "0"], "--max-memory must be at least 1, not 0"),
    (["--max-record-bytes", "0"], "--max-record-bytes must be at least 1, not 0"),
    (["--time-format", "dd/mm"], "--time-format 'dd/mm' has no strptime directive"),
    (["--ray", "local", "--ray-cpus", "0"], "--ray-cpus must be at least 1, not 0"),  # 14
    (["--ray", "local", "--workers", "0"], "--workers must be at least 1, not 0"),
    (["--workers", "0"], "--workers must be at least 1, not 0"),
    (["--shard-bytes", "0"], "--shard-bytes must be at least 1, not 0"),
    (["--ray", "local", "--gpus-per-worker", "-1"], "--gpus-per-worker must be at least 0, not -1.0"),
    (["--ray", "local", "--threads", "0"], "--threads must be at least 1, not 0"),
]


@pytest.mark.parametrize(("options", "message"), BUILD_CASES)
def test_3_8_14_bad_build_settings_are_refused_before_any_work(setup, capsys, tmp_path, options, message):
    _, corpus, _, _, encoder = setup
    out = tmp_path / "never"
    err = one_line_error(capsys, ["build", corpus, "--out", out, "--encoder", encoder, "--quiet", *options])
    assert message in err
    assert not out.exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["query", "{index}", "flood", "-k", "0"], "k must be at least 1, not 0"),
        (["query", "{index}", "flood", "--threads", "-2"], "--threads must be at least 1"),
        (["query", "{index}", "flood", "--k-factor", "0"], "--k-factor must be at least 1"),
        (["add", "{index}", "{corpus}", "--chunk-size", "0"], "--chunk-size must be at least 1"),
        (["add", "{index}", "{corpus}", "--batch-size", "-1"], "--batch-size must be at least 1"),
        (["add", "{index}", "{corpus}", "--ray", "local", "--ray-cpus", "0"], "--ray-cpus must be at least 1, not 0"),
        (["add", "{index}", "{corpus}", "--workers", "0"], "--workers must be at least 1, not 0"),
        (["add", "{index}", "{corpus}", "--workers", "2", "--shard-bytes", "0"], "--shard-bytes must be at least 1"),
        (["reindex", "{index}", "--index", "flat", "--target-recall", "2"], "--target-recall must be above 0"),
        (["reindex", "{index}", "--index", "flat", "--threads", "-1"], "--threads must be at least 1"),
        (["augment", "{index}", "--input", "{examples}", "--out", "{tmp}/a.jsonl", "--top", "0"],
         "--top must be at least 1"),
        (["eval-retrieval", "{index}", "--sample", "0"], "--sample must be at least 1"),
        (["eval-retrieval", "{index}", "--sample", "5", "--max-share", "1.5"], "--max-share must be between 0 and 1"),
        (["train-encoder", "{corpus}", "--out", "{tmp}/enc", "--base", "{encoder}", "--warmup", "2"],
         "--warmup must be between 0 and 1"),
        (["train-encoder", "{corpus}", "--out", "{tmp}/enc", "--base", "{encoder}", "--min-count", "0"],
         "--min-count must be at least 1"),
        (["finetune", "--task", "irony", "--train", "{examples}", "--dev", "{examples}", "--test", "{examples}",
          "--patience", "0"], "--patience must be at least 1"),
        (["finetune", "--task", "irony", "--train", "{examples}", "--dev", "{examples}", "--test", "{examples}",
          "--lr", "0"], "--lr must be above 0"),
    ],
)
def test_14_every_numeric_setting_of_every_command_is_checked(setup, capsys, tmp_path, argv, message):
    root, corpus, index, examples, encoder = setup
    names = {"index": index, "corpus": corpus, "examples": examples, "tmp": tmp_path, "encoder": encoder}
    assert message in one_line_error(capsys, [a.format(**names) for a in argv])


def test_14_settings_dataclasses_check_types_and_ranges(tiny_encoder):
    with pytest.raises(HiclError, match="--chunk-size must be a whole number, not 2.5"):
        BuildConfig(encoder=tiny_encoder.config, chunk_size=2.5)
    with pytest.raises(HiclError, match="--batch-size must be a number, not '8'"):
        DeviceConfig(batch_size="8")
    with pytest.raises(HiclError, match="--max-record-bytes"):
        ReaderConfig(max_record_bytes=-1)
    with pytest.raises(HiclError, match="--temperature must be above 0"):
        TrainConfig(base=tiny_encoder.config, temperature=0)
    with pytest.raises(HiclError, match="--trigger-epochs must be at least 0"):
        FinetuneConfig(backbone="x", task="irony", trigger_epochs=-1)
    import numpy as np

    assert BuildConfig(encoder=tiny_encoder.config, chunk_size=np.int64(8)).chunk_size == 8


def test_argparse_errors_are_one_line_too(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["build", "x", "--out", "y", "--batch-size", "many"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and "invalid int value: 'many'" in err


def test_9_outputs_in_missing_folders_fail_before_any_work(setup, capsys, tmp_path):
    _, _, index, examples, _ = setup
    err = one_line_error(capsys, ["query", index, "flood", "--out", "/nonexistent/x.jsonl"])
    assert "the folder /nonexistent does not exist" in err
    err = one_line_error(capsys, ["augment", index, "--input", examples, "--out", tmp_path / "missing" / "a.jsonl"])
    assert f"the folder {tmp_path / 'missing'} does not exist" in err


def test_10_and_19_query_files_bad_utf8_and_standard_input(setup, capsys, tmp_path, monkeypatch):
    _, _, index, _, _ = setup
    bad = tmp_path / "queries.txt"
    bad.write_bytes(b"football final\nphone \xff\xfe launch\n")
    assert "line 2 is not valid UTF-8 (byte 7)" in one_line_error(capsys, ["query", index, "--file", bad])
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"football final\n\nphone launch\n")))
    assert main(["query", str(index), "--file", "-", "-k", "2", "--json"]) == 0
    results = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["query"] for r in results] == ["football final", "phone launch"]
    assert all(len(r["hits"]) == 2 for r in results)


def test_15_an_empty_query_is_refused_from_the_cli_and_python(setup, capsys, tiny_encoder):
    _, _, index, _, _ = setup
    for text in ("", "   ", "\t\n"):
        assert "the query is empty" in one_line_error(capsys, ["query", index, text])
    with Retriever(index, encoder=tiny_encoder) as retriever:
        with pytest.raises(HiclError, match=r"the query is empty \(query 2 of 3\)"):
            retriever.search(["flood", " ", "fire"])
        only_tags = retriever.search("#topic1 #topic2", k=3, strip_query_hashtags=True)[0]
        assert only_tags.hits == retriever.search("#topic1 #topic2", k=3)[0].hits  # kept, not emptied


def test_16_augment_never_overwrites_its_input(setup, capsys):
    _, _, index, examples, _ = setup
    before = examples.read_bytes()
    err = one_line_error(capsys, ["augment", index, "--input", examples, "--out", examples])
    assert "is the input file" in err and examples.read_bytes() == before
    err = one_line_error(capsys, ["augment", index, "--input", examples, "--out",
                                  examples.parent / "." / examples.name])
    assert "is the input file" in err


@pytest.mark.parametrize("content", [b"", b"id,text\n1,a,b\n2,c,d\n"])
def test_17_a_build_that_indexes_nothing_fails_and_says_why(setup, capsys, tmp_path, content):
    _, _, _, _, encoder = setup
    corpus = tmp_path / ("posts.csv" if content else "posts.txt")
    corpus.write_bytes(content)
    out = tmp_path / "index"
    err = one_line_error(capsys, ["build", corpus, "--out", out, "--encoder", encoder, "--quiet"])
    if content:
        assert "no post indexed: all 2 records were rejected (bad_row 2)" in err
        assert f"the first: {corpus} line 2: bad_row (3 fields, the header has 2)" in err
    else:
        assert "the corpus holds no records (its files are empty)" in err
    assert not out.exists()


def test_17_an_add_that_adds_nothing_leaves_the_index_unchanged(setup, capsys, tmp_path):
    _, _, index, _, _ = setup
    before = (index / "manifest.json").read_bytes()
    corpus = tmp_path / "bad.csv"
    corpus.write_bytes(b"id,text\n1,a,b\n")
    err = one_line_error(capsys, ["add", index, corpus, "--quiet"])
    assert "no post added: all 1 records were rejected (bad_row 1)" in err and "is unchanged" in err
    assert (index / "manifest.json").read_bytes() == before


def test_26_the_progress_bar_has_a_total_and_27_a_folder_is_a_corpus(setup, capsys, tmp_path):
    _, corpus, _, _, encoder = setup
    folder = tmp_path / "dump"
    folder.mkdir()
    (folder / "posts.jsonl").write_bytes(corpus.read_bytes())
    (folder / "notes.md").write_text("not posts\n", encoding="utf-8")
    assert main(["build", str(folder), "--out", str(tmp_path / "index"), "--encoder", str(encoder)]) == 0
    captured = capsys.readouterr()
    assert f"skipped 1 files of no known corpus format: {folder / 'notes.md'}" in captured.err
    assert "reading and encoding: 100%" in captured.err and "65/65 [" in captured.err  # total and ETA known
    assert "read 65, indexed 62" in captured.out


@pytest.mark.parametrize("address", ["127.0.0.1:{port}", "no-such-host.invalid:6379"])
def test_13_a_ray_address_where_nothing_answers_fails_in_seconds(setup, tmp_path, address):
    pytest.importorskip("ray", reason="install the [ray] extra: pip install 'hicl-retrieval[ray]'")
    _, corpus, _, _, encoder = setup
    address = address.format(port=free_port())  # a port nothing listens on
    out = tmp_path / "index"
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "hicl_retrieval.cli", "build", str(corpus), "--out", str(out),
                           "--encoder", str(encoder), "--quiet", "--ray", address],
                          capture_output=True, text=True, timeout=120)
    seconds = time.monotonic() - started
    assert done.returncode == 1 and seconds < 30, (seconds, done.stderr)
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith(f"hicl-retrieval: error: --ray {address}: no Ray cluster answers there (")
    assert lines[0].endswith("); start one with `ray start --head` or use --ray local")
    assert ("the host no-such-host.invalid " if "invalid" in address else "connection refused") in lines[0]
    assert not out.exists() and sorted(tmp_path.iterdir()) == []


MIXED_TIMES = "id,text,created_at\n" + "".join(
    f"{i},river flooding downtown note {i} #topic{i % 5},"
    + (f"2024-05-{1 + i % 28:02d}T10:00:00Z" if i % 4 == 0 else f"{1 + i % 28:02d}/05/2024 10:{i:02d}") + "\n"
    for i in range(40)
)


def test_14_times_that_miss_the_given_time_format_are_counted_against_it(setup, capsys, tmp_path):
    _, _, _, _, encoder = setup
    path = tmp_path / "posts.csv"
    path.write_text(MIXED_TIMES, encoding="utf-8")
    assert main(["build", str(path), "--out", str(tmp_path / "index"), "--encoder", str(encoder), "--quiet",
                 "--time-format", "%d/%m/%Y %H:%M"]) == 0
    out = capsys.readouterr().out
    assert "notes: bad_created_at 10" in out
    assert (f"warning: 10 of 40 times in {path} did not match --time-format '%d/%m/%Y %H:%M'; "
            "those posts are kept without a time (bad_created_at)") in out.splitlines()
    assert "name its format" not in out

    corpus = Corpus([path], ReaderConfig(time_format="%Y-%m-%dT%H:%M:%SZ"))  # the other way round
    assert sum("bad_created_at" in record.notes for record in corpus if isinstance(record, Post)) == 30
    assert corpus.time_warnings == [f"30 of 40 times in {path} did not match --time-format '%Y-%m-%dT%H:%M:%SZ'; "
                                    "those posts are kept without a time (bad_created_at)"]
    corpus = Corpus([path])  # no format given: most times unreadable, so name one
    list(corpus)
    assert corpus.time_warnings == [f"{path}: the time of 30 of 40 posts could not be read (bad_created_at); "
                                    "name its format with --time-format, e.g. --time-format '%d/%m/%Y %H:%M'"]
