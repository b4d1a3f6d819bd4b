#!/usr/bin/env python3
"""Download the TweetEval datasets and verify them against pinned checksums.

TweetEval (Barbieri et al., Findings of EMNLP 2020) is a benchmark of seven
tweet classification tasks. This script fetches its files from the official
repository, https://github.com/cardiffnlp/tweeteval, at a fixed commit, and
keeps the repository's layout under the output directory::

    <out>/datasets/<task>/{train,val,test}_{text,labels}.txt, mapping.txt

Every file is checked against the SHA-256 checksum listed in ``MANIFEST``.
Files already present with the right checksum are skipped. Downloads go to a
temporary file in the destination folder, which is renamed into place only
once its checksum matches; on a mismatch the temporary file is removed and
the run stops with a non-zero exit status.

Examples::

    python scripts/fetch_tweeteval.py
    python scripts/fetch_tweeteval.py --tasks stance emotion --out data/tweeteval
    python scripts/fetch_tweeteval.py --base-url file:///srv/mirror/tweeteval

Only the Python standard library is used.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Optional, Sequence

COMMIT = "4fbd22cd78421f05b1ecdb4fc5725bc7a7bd8f66"
DEFAULT_BASE_URL = f"https://raw.githubusercontent.com/cardiffnlp/tweeteval/{COMMIT}"
DEFAULT_OUT = Path("data") / "tweeteval"
CHUNK_SIZE = 1 << 16
TIMEOUT_S = 60

# Path (relative to the repository root, as in the raw URL) -> SHA-256 of the
# file at COMMIT.
MANIFEST: dict[str, str] = {
    "datasets/README.txt": "f68ebb47bcd148ad7fbae666c61d0a41f29ffb85992b2afbd09f09ba98e773b2",
    "datasets/emoji/mapping.txt": "ac172bfbb0972d875a832224f48602472279be365454e3bce01084689100f4d3",
    "datasets/emoji/test_labels.txt": "c1662b84788f36674ab8f0106f3e2e7d3e258ddf4959086ac7cc75b1e68dd1f6",
    "datasets/emoji/test_text.txt": "e4de11de1597842c431dd67868e83322f5a432564dfd8558889ed8ac6a1a5e09",
    "datasets/emoji/train_labels.txt": "daee7da826683dbfa50ad3a29c60bc527e498f06c70eabee3745a99cc37ab3a5",
    "datasets/emoji/train_text.txt": "eacb6b0ee1fe2803d72a009c2e731fe07659f604318a979951d2f07c23c564a1",
    "datasets/emoji/val_labels.txt": "21ba456f688668d049ff0fb1fa04469ee684cf4e2467c71d2c3fe5ca2ba1bd1a",
    "datasets/emoji/val_text.txt": "3bc3742d6af404cea792671878684d110f3bc02fd79a2e34643789a521d81a26",
    "datasets/emotion/mapping.txt": "656dea85d149716af96206ca19bec0d94e9dc6de3f5079f5c7c2a241ec76cadb",
    "datasets/emotion/test_labels.txt": "245072348c711961785be6d395997f97cf7fcda3effeae7805664171dc75f913",
    "datasets/emotion/test_text.txt": "7e1070f5d3e3fcece5bc73680bff9981e90d8f7b2f1009bfe7a01d059d1c6091",
    "datasets/emotion/train_labels.txt": "987e767d8679e18abdf7de37a6d2bcd0a40a296ddd704e8d515cf0e3033c8d9c",
    "datasets/emotion/train_text.txt": "2c62f67aeb3eac1aea0e5a9c3d0f4bc337992581f3f858061786a1fb4d79d95e",
    "datasets/emotion/val_labels.txt": "313730630160b7e0a6b4235b800c76683f4aeeb72d094eb69646630cd5cfe338",
    "datasets/emotion/val_text.txt": "e2e30c86b8cbb97944d6543aedc06eace3bb275cb2f381aba787b838b4f23ca5",
    "datasets/hate/mapping.txt": "3fc75504ffae64ddc82e13afb5790af7798cd3167d7d35790abe78b39b991896",
    "datasets/hate/test_labels.txt": "c14adca6b3627616a835c5ccea8a1cceb0235cd79417257f093eb0e16a69c62f",
    "datasets/hate/test_text.txt": "bc4762876a8dd8baa55c3cd7b03108e3231a5d691e80b8b1ef97c5be31b9da9a",
    "datasets/hate/train_labels.txt": "4e8fde025a453a25c94632794254131dedeac4e57228ad64157c41571cc88f71",
    "datasets/hate/train_text.txt": "6572bb3a42143128a5dfa99af8debeb0668e637c34b2d1e3140dac47316fe2c2",
    "datasets/hate/val_labels.txt": "5092badf1a0e70036ea6264bcd0b78afc07d0f4a512fa6af34c2c4973600656b",
    "datasets/hate/val_text.txt": "1ff78b1ed4c5ce43284b9eba32eb7d60c6d45d0d1b3b4d6df456ae01640764f1",
    "datasets/irony/mapping.txt": "70e09046e181179b9870a2f59a3263bbb28c787831779e4ce4a18373d054296b",
    "datasets/irony/test_labels.txt": "08e2095e1725e74907a380614c220204e356bb46e3e8c93deb74e83e5b15ab38",
    "datasets/irony/test_text.txt": "53103da934a7308eee82f05f2a9781a8ea3e88604fdc1e02d3101108505c64be",
    "datasets/irony/train_labels.txt": "fc69e6106c0f1f433a91536e08f83c71a391d7b219f7684d42f243a8089af77d",
    "datasets/irony/train_text.txt": "a888125a44f7dfaa25b026318748d0e62cc9a300d20f66eafd62011a19eaea23",
    "datasets/irony/val_labels.txt": "ccf429f63b4e8d0e7f425ca09445f7c31f7cea8a1b7c283b015b117c4002fd07",
    "datasets/irony/val_text.txt": "8806cf3793e300a485cfae34892fc3a0a2f9a183deb06c750c6531515c83051e",
    "datasets/offensive/mapping.txt": "3e427f483dd5d5be21ae85dcf224c36b3d024af27999939fa0d438d695801c50",
    "datasets/offensive/test_labels.txt": "41d05a7aa0b01f5dafab21b95adb4f979cb4226c046ff315702774d10dac1605",
    "datasets/offensive/test_text.txt": "25b08c3333c26190f1023961c4508ec9aab24d4722b1a3ea7a6040724c120547",
    "datasets/offensive/train_labels.txt": "c0b7d6ebdaa4ebcf6fc557ef1e775d92eda160218a0e3b1dd48eb8234dc892a6",
    "datasets/offensive/train_text.txt": "78a7a32e38b10af7d8970b008bf17f661c8d0a90dad145fa0fa6a944669650db",
    "datasets/offensive/val_labels.txt": "ed2deb776bd1c52fb8221fadd3360e32d9dfe46842d78053528126e46363a258",
    "datasets/offensive/val_text.txt": "816f36d180c35f15a5104838cb73856a0bef42043482fe738f3481b06242a55c",
    "datasets/sentiment/mapping.txt": "c0572796fbe261d8ea5fd16c5061076fbba49bc69fc865d6abccaf60daacee24",
    "datasets/sentiment/test_labels.txt": "6afb4afe9374d1f983bcf9a7c79b108d0f37fdf020a83f30488309bed215db9d",
    "datasets/sentiment/test_text.txt": "09a93a55c63fd93f97485ef7302889d7edb4091cd49733aa37da094f0bfa0675",
    "datasets/sentiment/train_labels.txt": "122bfb1732fb6995b0e5c5f726c0ba457c469c3b6e60513007ce5037f23e65d4",
    # datasets/sentiment/train_text.txt is deliberately left out: its checksum
    # has not been taken from a verified copy, so it is not fetched. Without it
    # the sentiment train labels below have no texts to pair with; use the
    # sentiment val/test splits only.
    "datasets/sentiment/val_labels.txt": "b4566926c72e2e4e2916c864def94e76c4cdde52446af2c7ba4fc2006e057e51",
    "datasets/sentiment/val_text.txt": "e5b021e6fc45064c260b09814b803d8f56cada519c4d952d72f43d48a350a964",
    "datasets/stance/abortion/test_labels.txt": "c90e6d36d863f876d6661620d37b613b4b07858a5277c8d6623713ee59ca451c",
    "datasets/stance/abortion/test_text.txt": "bf0e16a0b8ca4cf0ab90efbc560db3151c288fc842f5e3c6554e8589d521556a",
    "datasets/stance/abortion/train_labels.txt": "e6786a594bd9a083c524a0f420c690351140b52af288f487cb4772d29675b014",
    "datasets/stance/abortion/train_text.txt": "a421d5b8fd9f972970b9275b83f65745bf81986d2a412b4caa2ba071f3efa916",
    "datasets/stance/abortion/val_labels.txt": "8df57a50823d5f3683ecf75d824a42e3b08eb52e25e3e2d6928f523097a0c050",
    "datasets/stance/abortion/val_text.txt": "0428ab3f2894936f2445a9020763c2bd19ed42986872168bb65886dede5843fd",
    "datasets/stance/atheism/test_labels.txt": "4ef7c9398d265cfac625092c834e43cef9da9cb318e563493abb64f65dfe1b52",
    "datasets/stance/atheism/test_text.txt": "16c5336b2cba606ca63a6afcc50241be63a8fccf021628c6505449439b9d54b3",
    "datasets/stance/atheism/train_labels.txt": "a764aac1a75ccb32c4ffc4c03c66dc365cb50f013d3e94549bf775636cbc8373",
    "datasets/stance/atheism/train_text.txt": "0e82f1d4a16d79a38a68aee761762cf8a846bc8f7f9395670ca44e2ecf2f58f7",
    "datasets/stance/atheism/val_labels.txt": "638095b3582f927fd1481cdb8d1f9f670f8d27880baf32c0b26c5946fd8f8292",
    "datasets/stance/atheism/val_text.txt": "5fe14c4c01f87a45dba640dddbb1d1909a893f9565f159c48fa1ba35bb46c209",
    "datasets/stance/climate/test_labels.txt": "193c9f2358f61d9efe558324ec89ecaf08e600a44b68128f47838c01d9f98dfd",
    "datasets/stance/climate/test_text.txt": "41ee8ee2ad3c36e0629654fdb271f37775197c79be8b299adbeadd2003b63c53",
    "datasets/stance/climate/train_labels.txt": "d6274f55bc95f5a7f2ae591b886c1414a7664aaf4e0c609f4ba6cf377929af18",
    "datasets/stance/climate/train_text.txt": "4803211832d318026323a8e5014cff1b95e1c8c3854378101e5d1a8c82582eb7",
    "datasets/stance/climate/val_labels.txt": "0cb133ab9b137292f075210db45f7e293dc52798a4e21e59037bfcfe66c97aa6",
    "datasets/stance/climate/val_text.txt": "fc5714703add266801ee2fd98296ea20ec0879e89cdb9f906d9812d9f640f2ba",
    "datasets/stance/feminist/test_labels.txt": "ddbde6d253ee47c5d5ef8bc5386270fde45cf088d3be70bba9c382b8a024897a",
    "datasets/stance/feminist/test_text.txt": "1bfdbdc2af64fd62dcc775d1288e192ac8ff805ef27ccf3aaac54a98616eefda",
    "datasets/stance/feminist/train_labels.txt": "abd4f196d801423bb0daba8c0ecf5b3efba1f10e8f410c3dfa360b50c8b9c685",
    "datasets/stance/feminist/train_text.txt": "c176e6663973c8e78bfa92ba1e8874a70cc5358567d71584a90943bc6525eaab",
    "datasets/stance/feminist/val_labels.txt": "399e0d468d0e4ead7a445f69efdf35876c835acf4cefc00a16f451a5d42e5c13",
    "datasets/stance/feminist/val_text.txt": "3518b2ddcf696626a7243d7cea720a975718c7a52a5a086931be87897c1de58b",
    "datasets/stance/hillary/test_labels.txt": "068468f6a72b85dfb65bf10e45f2453fa082d1ea9d7a40e7f560d5b6d75027f3",
    "datasets/stance/hillary/test_text.txt": "5c4e020285a62cfd88f264849e1db242ded356c171b1a68dd0050b76635053aa",
    "datasets/stance/hillary/train_labels.txt": "0ea5753d13a717a9e91581d1d89c0b5206c8f905f0a717b2b27d02dbf419250d",
    "datasets/stance/hillary/train_text.txt": "0bd735de895cb74d63c224e64e3d955cac99be97aa225f803fe4d2f5978a2c99",
    "datasets/stance/hillary/val_labels.txt": "e5d44c771b7349a4a74309f56ca072fdf8f1c015068d519ca2ed3a931c833606",
    "datasets/stance/hillary/val_text.txt": "9714b7dcc8617e095433d7b63df8aa155eb84216b9ac9195105ab83d85cd248d",
    "datasets/stance/mapping.txt": "0f8a803dc1773c84279506f25d54b5a9eec7edfc277b41eb75076744dc89b26f",
}


class FetchError(Exception):
    """A file could not be downloaded or did not match its checksum."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


@dataclass
class Summary:
    """What one call to :func:`fetch` did."""

    out_dir: Path
    downloaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    bytes_downloaded: int = 0

    @property
    def total(self) -> int:
        return len(self.downloaded) + len(self.skipped)

    def line(self) -> str:
        return (
            f"tweeteval@{COMMIT[:7]}: {self.total} files in {self.out_dir} "
            f"({len(self.downloaded)} downloaded, {self.bytes_downloaded:,} bytes; "
            f"{len(self.skipped)} already present)"
        )


def task_of(path: str) -> str:
    """Folder of a manifest path below ``datasets/`` ("" for top-level files)."""
    parts = path.split("/")[1:-1]
    return "/".join(parts)


def available_tasks(manifest: Optional[Mapping[str, str]] = None) -> list[str]:
    """Task names accepted by ``--tasks``: top-level task folders and stance targets."""
    manifest = MANIFEST if manifest is None else manifest
    names = set()
    for path in manifest:
        folder = task_of(path)
        parts = folder.split("/") if folder else []
        for i in range(1, len(parts) + 1):
            names.add("/".join(parts[:i]))
    return sorted(names)


def select(
    tasks: Optional[Iterable[str]] = None,
    manifest: Optional[Mapping[str, str]] = None,
) -> list[str]:
    """Manifest paths needed for ``tasks`` (all files when ``tasks`` is empty or None).

    A task selects the files in its folder and below it, plus the files in the
    folders above it (``datasets/README.txt``; ``stance/mapping.txt`` for a
    single stance target such as ``stance/climate``).
    """
    manifest = MANIFEST if manifest is None else manifest
    wanted = [t.strip().strip("/") for t in (tasks or []) if t.strip().strip("/")]
    if not wanted:
        return sorted(manifest)
    known = set(available_tasks(manifest))
    unknown = [t for t in wanted if t not in known]
    if unknown:
        raise ValueError(
            f"unknown task(s): {', '.join(unknown)}; choose from {', '.join(sorted(known))}"
        )
    chosen = []
    for path in sorted(manifest):
        folder = task_of(path)
        for t in wanted:
            below = folder == t or folder.startswith(t + "/")
            above = folder == "" or t.startswith(folder + "/")
            if below or above:
                chosen.append(path)
                break
    return chosen


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK_SIZE), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _download_verified(url: str, dest: Path, expected: str, rel: str) -> int:
    """Download ``url`` next to ``dest``, check it, then move it into place."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        size = 0
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp:
                    for chunk in iter(lambda: resp.read(CHUNK_SIZE), b""):
                        digest.update(chunk)
                        out.write(chunk)
                        size += len(chunk)
            except (urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                raise FetchError(rel, f"download from {url} failed: {reason}") from exc
        actual = digest.hexdigest()
        if actual != expected:
            raise FetchError(
                rel, f"checksum mismatch (expected sha256 {expected}, got {actual}); file discarded"
            )
        os.replace(tmp, dest)
        return size
    finally:
        if tmp.exists():
            tmp.unlink()


def fetch(
    out_dir: os.PathLike | str = DEFAULT_OUT,
    base_url: str = DEFAULT_BASE_URL,
    tasks: Optional[Iterable[str]] = None,
    manifest: Optional[Mapping[str, str]] = None,
) -> Summary:
    """Fetch the files of ``tasks`` (default: all) from ``base_url`` into ``out_dir``.

    Raises :class:`FetchError` on the first file that cannot be downloaded or
    does not match its checksum; files completed before it stay in place.
    """
    manifest = MANIFEST if manifest is None else manifest
    out = Path(out_dir)
    summary = Summary(out_dir=out)
    base = base_url.rstrip("/")
    for rel in select(tasks, manifest):
        expected = manifest[rel]
        dest = out.joinpath(*rel.split("/"))
        if dest.is_file() and sha256_of(dest) == expected:
            summary.skipped.append(rel)
            continue
        summary.bytes_downloaded += _download_verified(f"{base}/{rel}", dest, expected, rel)
        summary.downloaded.append(rel)
    return summary


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Download the TweetEval datasets (cardiffnlp/tweeteval at a pinned "
        "commit) and verify their SHA-256 checksums.",
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT,
        help="target directory; files land in OUT/datasets/<task>/ (default: %(default)s)",
    )
    parser.add_argument(
        "--base-url", default=DEFAULT_BASE_URL,
        help="URL that the repository paths are appended to; a mirror or a file:// "
        "directory works too (default: %(default)s)",
    )
    parser.add_argument(
        "--tasks", nargs="+", metavar="TASK", default=None,
        help="tasks to fetch, space- or comma-separated, e.g. 'stance emotion' or "
        "'stance/climate' (default: all; see --list-tasks)",
    )
    parser.add_argument("--list-tasks", action="store_true", help="print the task names and exit")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list_tasks:
        print("\n".join(available_tasks()))
        return 0
    tasks = [t for item in (args.tasks or []) for t in item.split(",") if t.strip()]
    try:
        select(tasks)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        summary = fetch(args.out, args.base_url, tasks)
    except FetchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(summary.line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
