"""``sedd.data``: FASTA in and out, cluster files, cluster-held-out splits, length-bucketed batches."""
from __future__ import annotations

import random
from collections import Counter

import pytest
import torch

from sedd.alphabet import PROTEIN
from sedd.data import (Dataset, bucketed_batches, collate, describe_dropped, format_fasta, read_clusters, read_fasta,
                       split, write_fasta)


def clustered_dataset(seed: int = 0) -> tuple[Dataset, dict[str, str]]:
    """300 sequences in 60 clusters of 1–12 members, plus 10 sequences missing from the cluster map."""
    rng = random.Random(seed)
    ids, clusters = [], {}
    for c in range(60):
        for m in range(rng.randint(1, 12)):
            ids.append(f"c{c}_m{m}")
            clusters[ids[-1]] = f"c{c}_m0"
    ids += [f"lonely{i}" for i in range(10)]
    rng.shuffle(ids)
    return Dataset(ids, [[rng.randrange(20) for _ in range(rng.randint(20, 40))] for _ in ids]), clusters


# ---- FASTA ------------------------------------------------------------------------------------------
def test_fasta_round_trip_keeps_ids_and_sequences(tmp_path):
    sequences, ids = ["MKVAG", "ACDEFGHIKLMNPQRSTVWY"], ["first", "second"]
    path = write_fasta(tmp_path / "out" / "x.fasta", sequences, ids)
    assert path.read_text() == ">first\nMKVAG\n>second\nACDEFGHIKLMNPQRSTVWY\n"
    data = read_fasta(path, PROTEIN)
    assert data.ids == ids and [PROTEIN.decode(t) for t in data.tokens] == sequences
    assert format_fasta(["AC", "DE"], prefix="design") == ">design_1\nAC\n>design_2\nDE\n"
    with pytest.raises(ValueError, match="1 ids for 2 sequences"):
        format_fasta(["AC", "DE"], ["one"])


def test_fasta_reader_reports_dropped_sequences(tmp_path):
    path = write_fasta(tmp_path / "mixed.fasta", ["MKVAG", "MKXAG", "MBXZ", "A" * 200, "GGG*"])
    data = read_fasta(path, PROTEIN, max_len=128)
    assert [PROTEIN.decode(t) for t in data.tokens] == ["MKVAG", "GGG"]
    message = describe_dropped(data)
    assert message.startswith("dropped 3 of 5 sequences")
    assert "2 contain 'X'" in message and "1 contain 'B'" in message and "1 longer than 128" in message


def test_digits_in_a_sequence_are_ignored_as_sedd_score_ignores_them(tmp_path):
    """A GenBank-style numbered block was scored by sedd.score and dropped by sedd.evaluate ("contain '1'")."""
    path = tmp_path / "numbered.fasta"
    path.write_text(">a\n1 MKV LA 12\n13 GG*\n>b\nMK 9 X\n")
    data = read_fasta(path, PROTEIN)
    assert data.ids == ["a"] and PROTEIN.decode(data.tokens[0]) == "MKVLAGG"
    assert describe_dropped(data) == "dropped 1 of 2 sequences: 1 contain 'X'"


# ---- cluster files ------------------------------------------------------------------------------------
def test_read_clusters_maps_members_to_representatives(tmp_path):
    path = tmp_path / "clusters.tsv"
    path.write_text("cluster\tmember\nA\tA\nA\tB\n\nC\tC\nA\tD\n")
    assert read_clusters(path) == {"A": "A", "B": "A", "C": "C", "D": "A"}
    path.write_text("A\tA\nA\tB\n")                           # the header is optional
    assert read_clusters(path) == {"A": "A", "B": "A"}


@pytest.mark.parametrize("text, message", [("A\tA\nA B\n", r"line 2: expected 'cluster<TAB>member', got \['A B'\]"),
                                           ("A\tB\tC\n", "line 1"), ("cluster\tmember\n", "holds no")])
def test_read_clusters_names_the_bad_line(tmp_path, text, message):
    path = tmp_path / "bad.tsv"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        read_clusters(path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_clusters(tmp_path / "missing.tsv")


# ---- splits -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fraction", [0.05, 0.2, 0.5])
def test_cluster_split_keeps_whole_clusters_and_the_fraction(fraction):
    data, clusters = clustered_dataset()
    train, val = split(data, fraction, seed=3, clusters=clusters)
    assert sorted(train.ids + val.ids) == sorted(data.ids) and not set(train.ids) & set(val.ids)
    cluster_of = lambda seq_id: clusters.get(seq_id, seq_id)          # noqa: E731
    assert not {cluster_of(i) for i in train.ids} & {cluster_of(i) for i in val.ids}, "a cluster straddles the split"
    largest = max(Counter(cluster_of(i) for i in data.ids).values())
    target = fraction * len(data)
    assert target <= len(val) < target + largest                      # whole clusters until the target is met
    by_id = dict(zip(data.ids, data.tokens))
    assert all(by_id[i] == t for i, t in zip(val.ids, val.tokens))   # ids and tokens stay together


def test_cluster_split_is_seeded():
    data, clusters = clustered_dataset()
    assert split(data, 0.2, 7, clusters)[1].ids == split(data, 0.2, 7, clusters)[1].ids
    assert split(data, 0.2, 7, clusters)[1].ids != split(data, 0.2, 8, clusters)[1].ids


def test_the_split_cli_writes_the_split_training_makes(tmp_path, capsys):
    from sedd.data import main
    data, clusters = clustered_dataset()
    write_fasta(tmp_path / "all.fasta", [PROTEIN.decode(t) for t in data.tokens], data.ids)
    (tmp_path / "clusters.tsv").write_text("".join(f"{c}\t{m}\n" for m, c in clusters.items()))
    args = ["--data", str(tmp_path / "all.fasta"), "--clusters", str(tmp_path / "clusters.tsv"), "--val-fraction", "0.2",
            "--seed", "7", "--out", str(tmp_path / "split")]
    assert main(args) == 0
    train, val = split(read_fasta(tmp_path / "all.fasta", PROTEIN), 0.2, 7, read_clusters(tmp_path / "clusters.tsv"))
    for name, part in (("train.fasta", train), ("val.fasta", val)):
        written = read_fasta(tmp_path / "split" / name, PROTEIN)
        assert written.ids == part.ids and written.tokens == part.tokens
    assert main(args[:-1] + [str(tmp_path / "all.fasta" / "x")]) == 2 and "error:" in capsys.readouterr().err
    with pytest.raises(SystemExit):                  # training refuses a negative seed; so does its split
        main([*args[:7], "-7", *args[8:]])
    assert "--seed: '-7' is not a whole number from 0" in capsys.readouterr().err


def test_split_without_clusters_warns_and_splits_by_sequence():
    data, _ = clustered_dataset()
    with pytest.warns(UserWarning, match="near-duplicates will leak"):
        train, val = split(data, 0.1, seed=0)
    assert len(val) == round(0.1 * len(data)) and len(train) + len(val) == len(data)
    with pytest.raises(ValueError, match="between 0 and 1"):
        split(data, 1.5, seed=0, clusters={})


# ---- batches ------------------------------------------------------------------------------------------
def test_bucketed_batches_cover_every_sequence_once_within_the_token_budget():
    rng = random.Random(0)
    lengths = [rng.randint(20, 128) for _ in range(1000)] + [1100]    # one longer than a batch
    batches = bucketed_batches(lengths, tokens_per_batch=1024, seed=1)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(lengths)))
    for b in batches:
        assert len(b) * max(lengths[i] for i in b) <= 1024 or len(b) == 1
    assert [1000] in batches                                         # the long one rides alone
    # sorted within windows: far less padding than batches of the same sizes drawn at random
    padding = sum(len(b) * max(lengths[i] for i in b) - sum(lengths[i] for i in b) for b in batches)
    shuffled = random.Random(2).sample(range(len(lengths)), len(lengths))
    sizes, random_padding, start = [len(b) for b in batches], 0, 0
    for size in sizes:
        chunk = shuffled[start:start + size]
        random_padding += size * max(lengths[i] for i in chunk) - sum(lengths[i] for i in chunk)
        start += size
    assert padding < 0.2 * random_padding
    assert bucketed_batches(lengths, 1024, seed=1) == batches and bucketed_batches(lengths, 1024, seed=2) != batches


def test_bucketed_batches_give_each_rank_its_own_equal_shard():
    lengths = [random.Random(i).randint(20, 128) for i in range(999)]
    shards = [bucketed_batches(lengths, 2048, seed=0, rank=r, world_size=3) for r in range(3)]
    assert len({len(s) for s in shards}) == 1                         # every rank steps the same number of times
    everything = bucketed_batches(lengths, 2048, seed=0)
    assert [b for s in shards for b in s] != [] and sorted(map(tuple, (b for s in shards for b in s))) == \
        sorted(map(tuple, everything[:len(everything) - len(everything) % 3]))


def test_collate_pads_with_the_given_id():
    x0, lengths = collate([[1, 2, 3], [4]], pad_id=PROTEIN.pad_id)
    assert torch.equal(x0, torch.tensor([[1, 2, 3], [4, PROTEIN.pad_id, PROTEIN.pad_id]]))
    assert lengths.tolist() == [3, 1]
