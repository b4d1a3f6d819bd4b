import io
import json

import pytest
from helpers import write_corpus

from hicl_retrieval.cli import main


@pytest.fixture(scope="module")
def cli_index(tmp_path_factory, tiny_hashencoder):
    root = tmp_path_factory.mktemp("cli")
    corpus = root / "posts.jsonl"
    write_corpus(corpus)
    index = root / "index"
    code = main(["build", str(corpus), "--out", str(index), "--encoder", str(tiny_hashencoder),
                 "--pooling", "pooler", "--quiet", "--json"])
    assert code == 0
    return root, index


def test_build_prints_the_report(cli_index, capsys, tiny_hashencoder):
    root, _ = cli_index
    code = main(["build", str(root / "posts.jsonl"), "--out", str(root / "again"), "--encoder",
                 str(tiny_hashencoder), "--quiet"])
    out = capsys.readouterr().out
    assert code == 0
    assert "read 65, indexed 62, rejected 2 (bad_json 1, empty_text 1), duplicate post ids 1" in out
    assert "rejects.jsonl" in out


def test_query_text_json_and_file(cli_index, capsys, tmp_path):
    _, index = cli_index
    assert main(["query", str(index), "wildfire smoke over the ridge", "-k", "3", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["query"] == "wildfire smoke over the ridge"
    assert len(result["hits"]) == 3
    assert set(result["hits"][0]) >= {"id", "score", "text", "hashtags", "author", "created_at", "source", "line"}

    queries = tmp_path / "queries.txt"
    queries.write_text("football final\n\n\u200b \u2060\nphone launch #topic3\n", encoding="utf-8")
    out = tmp_path / "hits.jsonl"
    assert main(["query", str(index), "--file", str(queries), "-k", "4", "--out", str(out), "--strip-hashtags"]) == 0
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [(r["line"], r["query"]) for r in lines] == [(1, "football final"), (4, "phone launch #topic3")]
    assert all(len(r["hits"]) == 4 for r in lines)
    assert capsys.readouterr().out == (f"2 queries, results in {out}; 2 lines skipped (blank, or only invisible "
                                       "characters)\n")


def test_every_answer_of_a_query_file_names_its_line(cli_index, capsys, tmp_path, monkeypatch):
    _, index = cli_index
    queries = tmp_path / "queries.txt"
    queries.write_text("\n  \n#topic2 #topic4\n\nriver flooding downtown\n\u200b\nvote counting\n", encoding="utf-8")
    assert main(["query", str(index), "--file", str(queries), "-k", "2", "--json", "--strip-hashtags"]) == 0
    captured = capsys.readouterr()
    answers = [json.loads(line) for line in captured.out.splitlines()]
    assert [(a["line"], a["query"]) for a in answers] == [(3, "#topic2 #topic4"), (5, "river flooding downtown"),
                                                          (7, "vote counting")]
    assert captured.err.splitlines()[-1] == "3 queries; 4 lines skipped (blank, or only invisible characters)"
    with open(queries, "rb") as stdin_file:  # the same from standard input, as text
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(stdin_file))
        assert main(["query", str(index), "--file", "-", "-k", "1"]) == 0
    heads = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[")]
    assert heads == ["[line 3] #topic2 #topic4", "[line 5] river flooding downtown", "[line 7] vote counting"]
    assert main(["query", str(index), "vote counting", "--json", "-k", "1"]) == 0
    assert "line" not in json.loads(capsys.readouterr().out)  # a query given as text has no line

    assert main(["query", str(index), "football final", "-k", "2"]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0] == "[1] football final" and " 1. " in text and " 2. " in text
    assert main(["query", str(index), "\u200b"]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == ("hicl-retrieval: error: the query shows nothing (only "
                                                        "invisible characters); give the text of a post, or leave it out")


def test_info(cli_index, capsys):
    _, index = cli_index
    assert main(["info", str(index)]) == 0
    out = capsys.readouterr().out
    assert "posts       62" in out and "IDMap2,Flat" in out and "pooling pooler" in out
    assert main(["info", str(index), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["count"] == 62


def test_user_errors_are_one_line_and_exit_1(cli_index, capsys, tmp_path):
    _, index = cli_index
    assert main(["query", str(tmp_path / "nope"), "text"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("hicl-retrieval: error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert main(["query", str(index)]) == 1
    assert "either as TEXT or with --file" in capsys.readouterr().err
    assert main(["build", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "x"), "--encoder", "minilm"]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_resume_flag_needs_an_unfinished_build(cli_index, capsys, tiny_hashencoder):
    root, index = cli_index
    args = ["build", str(root / "posts.jsonl"), "--out", str(index), "--encoder", str(tiny_hashencoder),
            "--pooling", "pooler", "--quiet", "--resume"]
    assert main(args) == 1
    assert "no unfinished build" in capsys.readouterr().err
    assert main(args + ["--overwrite"]) == 1
