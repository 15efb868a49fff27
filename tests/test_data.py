"""``sedd.data``: FASTA in and out (as files come: gzip, empty headers, spaces, Windows line ends), cluster
files, cluster-held-out splits and the split command line, length-bucketed batches."""
from __future__ import annotations

import gzip
import random
import warnings
from collections import Counter

import pytest
import torch
from conftest import profile_family
from train_helpers import dropout_config, trainer

from sedd import data as sedd_data
from sedd.alphabet import PROTEIN
from sedd.data import (Dataset, bucketed_batches, collate, describe_dropped, format_fasta, read_clusters, read_fasta,
                       split, write_fasta)

SEQ = "MSTARPLKSVDYEVFGRVQGVFFRKHTQAEGKKLGLVGWVQNTDRGTVQGQLQG"


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
    path.write_text("A\tA\nA\tB\nA\tB\n")                     # a line repeated says nothing new
    assert read_clusters(path) == {"A": "A", "B": "A"}


def test_a_member_listed_under_two_clusters_is_refused(tmp_path):
    """The last line won, silently: a held-out cluster's member went into training with it."""
    path = tmp_path / "clusters.tsv"
    path.write_text("A\tA\nA\tB\nC\tC\nC\tB\n")
    with pytest.raises(ValueError, match=r"line 4: 'B' is listed under cluster 'C' here and under 'A' on line 2"):
        read_clusters(path)


def test_a_cluster_member_is_read_as_written_without_quoting_or_trailing_spaces(tmp_path):
    """csv's defaults read a member starting with '"' as a quoted field that swallowed the lines after it,
    and 'B ' never matched the FASTA id 'B': either way members silently became clusters of their own."""
    path = tmp_path / "clusters.tsv"
    path.write_text('A\t"B\nA\tC\nD\tD \nD\tE\r\n \t \n')
    assert read_clusters(path) == {'"B': "A", "C": "A", "D": "D", "E": "D"}


def test_records_sharing_an_id_are_warned_about_in_a_cluster_split():
    data, clusters = clustered_dataset()
    shared = Dataset(data.ids + [data.ids[0]], data.tokens + [data.tokens[1]])
    with pytest.warns(UserWarning, match=f"1 FASTA id\\(s\\) name more than one record \\(such as '{data.ids[0]}'\\)"):
        split(shared, 0.2, seed=0, clusters=clusters)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        split(data, 0.2, seed=0, clusters=clusters)


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


def test_the_split_cli_splits_a_custom_alphabet_as_training_reads_it(tmp_path, capsys):
    """sedd.data read every file as protein: an RNA family lost each sequence with a U from its split."""
    from sedd.alphabet import Alphabet
    from sedd.data import main
    rna = Alphabet("ACGU", mask_chars="_")
    rng = random.Random(0)
    sequences = ["".join(rng.choice("ACGU") for _ in range(30)) for _ in range(40)]
    write_fasta(tmp_path / "rna.fasta", sequences)
    assert main(["--data", str(tmp_path / "rna.fasta"), "--alphabet", "ACGU", "--out", str(tmp_path / "split")]) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)           # the by-sequence split's warning, said by main too
        train, val = split(read_fasta(tmp_path / "rna.fasta", rna), 0.05, 0)
    for name, part in (("train.fasta", train), ("val.fasta", val)):
        assert read_fasta(tmp_path / "split" / name, rna).tokens == part.tokens
    assert len(train) + len(val) == 40 and "dropped" not in capsys.readouterr().err


def test_a_space_that_is_a_residue_of_the_alphabet_is_kept_in_training_data(tmp_path):
    """A text model's alphabet has the space: training read 'the fox' as 'thefox', templates as 'the fox'."""
    from sedd.alphabet import Alphabet
    text = Alphabet.from_text(["the quick fox", "a stitch"])
    write_fasta(tmp_path / "text.fasta", ["the quick fox", "a stitch"])
    assert [text.decode(t) for t in read_fasta(tmp_path / "text.fasta", text).tokens] == ["the quick fox", "a stitch"]
    # a comment line is blanked to spaces, and a blank line is no text: neither becomes a run of spaces
    (tmp_path / "text.fasta").write_text(">a\n; a comment\nthe quick\n\n   \n>b\na stitch\n")
    assert [text.decode(t) for t in read_fasta(tmp_path / "text.fasta", text).tokens] == ["the quick", "a stitch"]


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


# ---- FASTA files as they come ----------------------------------------------------------------------------
def test_a_gzip_compressed_fasta_reads_as_the_plain_one(tmp_path):
    text = b"\xef\xbb\xbf>a first\r\nMKV\r\nGF*\r\n>b\rmkkgg\r>c\n\n"
    (tmp_path / "plain.fasta").write_bytes(text)
    (tmp_path / "family.fasta.gz").write_bytes(gzip.compress(text))
    plain = read_fasta(tmp_path / "plain.fasta", PROTEIN)
    packed = read_fasta(tmp_path / "family.fasta.gz", PROTEIN)
    assert packed.ids == plain.ids == ["a", "b"]
    assert [PROTEIN.decode(t) for t in packed.tokens] == ["MKVGF", "MKKGG"]
    assert packed.dropped == plain.dropped == {"empty": 1}


def test_a_truncated_gzip_fasta_is_named_as_such(tmp_path):
    path = tmp_path / "cut.fasta.gz"
    path.write_bytes(gzip.compress(b">a\nMKVGF\n" * 100)[:30])
    with pytest.raises(ValueError, match=r"could not read .*cut.fasta.gz as gzip-compressed FASTA"):
        read_fasta(path, PROTEIN)


def test_fasta_records_with_one_header_or_an_empty_header_are_all_read(tmp_path):
    path = tmp_path / "x.fasta"
    path.write_text(">\nMKV\n>a\nMKVL\n>a\nMKVLL\n>a other words\nGG\n")
    got = read_fasta(path, PROTEIN)
    assert got.ids == ["record_1", "a", "a", "a"]
    assert [PROTEIN.decode(t) for t in got.tokens] == ["MKV", "MKVL", "MKVLL", "GG"]


def test_fasta_sequence_lines_may_hold_spaces_and_windows_line_ends(tmp_path):
    path = tmp_path / "x.fasta"
    path.write_bytes(b"\n>a\r\nmkv LLA\r\n;a comment\r\nGG*\r\n>b\r\nAC DE\r\n")
    got = read_fasta(path, PROTEIN)
    assert got.ids == ["a", "b"] and [PROTEIN.decode(t) for t in got.tokens] == ["MKVLLAGG", "ACDE"]


def test_a_fasta_with_nothing_usable_says_why(tmp_path):
    path = tmp_path / "aligned.fasta"
    path.write_text(">a\nMK-VG*\n>b\nMK--G\n")
    with pytest.raises(ValueError, match=r"holds no usable sequence .*: dropped 2 of 2 sequences: 2 contain '-' "
                                         r"\(an alignment\? remove its gap characters\)"):
        read_fasta(path, PROTEIN)
    with pytest.raises(ValueError, match=r"is a folder, not a FASTA file"):
        read_fasta(tmp_path, PROTEIN)


# ---- splits that cannot train, or that would put one sequence on both sides ------------------------------
def test_a_split_that_leaves_nothing_to_train_on_is_refused():
    with pytest.raises(ValueError, match=r"holding out 1 of 1 sequence\(s\) for validation leaves none to train on"):
        with pytest.warns(UserWarning):
            split(Dataset(["a"], [[0, 1]]), 0.05, 0)
    one_cluster = Dataset(["a", "b"], [[0, 1], [2, 3]])
    with pytest.raises(ValueError, match=r"leaves none to train on \(1 cluster\(s\)\)"):
        split(one_cluster, 0.05, 0, {"a": "a", "b": "a"})


def dataset(sequences: list[str], ids: list[str] | None = None) -> Dataset:
    ids = ids or [f"s{i}" for i in range(len(sequences))]
    return Dataset(ids, [PROTEIN.encode(s) for s in sequences])


@pytest.mark.parametrize("seed", range(6))
def test_no_sequence_is_on_both_sides_of_a_cluster_split(seed):
    """The same sequence under two ids in different clusters (a cluster file made from other data,
    or one that lacks ids): validation keeps its whole clusters, training loses the copies of them."""
    seqs, _ = profile_family(60, 12, seed=1)
    data = dataset(seqs + seqs[:20], [f"a{i}" for i in range(60)] + [f"copy{i}" for i in range(20)])
    clusters = {f"a{i}": f"c{i // 3}" for i in range(60)}           # the copies are missing: their own clusters
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train, val = split(data, 0.2, seed, clusters)
    assert not set(map(tuple, train.tokens)) & set(map(tuple, val.tokens))
    cluster_of = lambda seq_id: clusters.get(seq_id, seq_id)          # noqa: E731
    assert not {cluster_of(i) for i in train.ids} & {cluster_of(i) for i in val.ids}
    assert len(val) >= 0.2 * len(data)
    left_out = sorted(set(data.ids) - set(train.ids) - set(val.ids))
    assert left_out and all(data.tokens[data.ids.index(i)] in val.tokens for i in left_out)
    first = next(i for i in data.ids if i in left_out)
    assert [str(w.message) for w in caught] == [f"left {len(left_out)} sequence(s) out of training, copies of "
                                                f"held-out sequences under other ids in other clusters (first: {first})"]


def test_a_split_without_duplicates_is_unchanged():
    """Where no sequence repeats, the split is the one published runs were trained on (pinned ids)."""
    seqs, _ = profile_family(40, 12, seed=3)
    data = dataset(seqs)
    clusters = {f"s{i}": f"c{i // 4}" for i in range(40)}
    assert split(data, 0.2, 0, clusters)[1].ids == PINNED_CLUSTER_VAL
    with pytest.warns(UserWarning):
        assert split(data, 0.2, 0)[1].ids == PINNED_SEQUENCE_VAL


PINNED_CLUSTER_VAL = ["s28", "s29", "s30", "s31", "s32", "s33", "s34", "s35"]
PINNED_SEQUENCE_VAL = ["s0", "s12", "s15", "s21", "s27", "s29", "s34", "s38"]


# ---- a cluster file that does not go with the FASTA ------------------------------------------------------
def test_a_cluster_file_that_names_none_of_the_sequences_is_refused_not_a_silent_split_by_sequence(
        tmp_path, family_and_clusters, capsys):
    """Ids spelled otherwise than in the FASTA (here 'sp|seq0|X' for 'seq0'): every sequence would be a
    cluster of its own, a split by sequence without even the by-sequence warning. Before, sedd.data wrote
    that split, and sedd.train and sedd.evaluate used it, as if it held out whole clusters."""
    fasta, _ = family_and_clusters
    other = tmp_path / "other.tsv"
    other.write_text("".join(f"c{i // 4}\tsp|seq{i}|X\n" for i in range(120)))
    assert sedd_data.main(["--data", str(fasta), "--clusters", str(other), "--out", str(tmp_path / "split")]) == 2
    err = capsys.readouterr().err
    assert "the cluster file names none of the 120 sequences (FASTA ids such as 'seq0', cluster members such as " \
           "'sp|seq0|X')" in err
    assert not (tmp_path / "split").exists()
    with pytest.raises(ValueError, match="names none of the 120 sequences"):
        trainer(dropout_config(fasta, tmp_path / "run", max_steps=2, clusters=str(other)))


def test_a_cluster_file_that_names_some_of_the_sequences_still_splits(family_and_clusters):
    """The documented rule stays: sequences the file lacks are clusters of their own."""
    fasta, clusters = family_and_clusters
    some = {member: cluster for member, cluster in read_clusters(clusters).items() if member != "seq0"}
    train, val = split(read_fasta(fasta, PROTEIN), 0.2, 0, some)
    assert len(train) + len(val) == 120


# ---- the split command line --------------------------------------------------------------------------------
def test_the_split_cli_notes_dropped_sequences_and_warns_in_one_line(tmp_path, capsys):
    path = tmp_path / "all.fasta"
    path.write_text("".join(f">s{i}\n{SEQ}\n" for i in range(10)) + ">gap\nMK-V\n")
    assert sedd_data.main(["--data", str(path), "--out", str(tmp_path / "split")]) == 0
    err = capsys.readouterr().err
    assert "note: dropped 1 of 11 sequences: 1 contain '-'" in err
    assert "warning: validation split is random by sequence" in err and "UserWarning" not in err


def test_the_split_cli_refuses_an_unwritable_out_and_a_max_len_below_one(tmp_path, capsys, monkeypatch):
    (tmp_path / "afile").write_text("")
    monkeypatch.setattr(sedd_data, "read_fasta", lambda *a, **k: pytest.fail("read the FASTA before checking --out"))
    assert sedd_data.main(["--data", "x.fasta", "--out", str(tmp_path / "afile" / "split")]) == 2
    assert "afile is a file, not a folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        sedd_data.main(["--data", "x.fasta", "--out", str(tmp_path / "split"), "--max-len", "0"])
    assert e.value.code == 2 and "argument --max-len: '0' is not a length from 1 to 100,000 residues" in capsys.readouterr().err


# ---- batches for a rank outside the world ---------------------------------------------------------------
@pytest.mark.parametrize("rank,world_size,message", [
    (2, 2, r"rank must be 0 … 1 for world_size 2, got 2"),
    (-1, 2, r"rank must be 0 … 1 for world_size 2, got -1"),
    (0, 0, r"world_size must be a whole number ≥ 1, got 0"),
])
def test_bucketed_batches_refuses_a_rank_outside_the_world(rank, world_size, message):
    with pytest.raises(ValueError, match=message):
        bucketed_batches([30] * 10, 128, seed=0, rank=rank, world_size=world_size)


def test_a_cluster_file_that_lacks_most_of_the_sequences_is_warned_about(family_and_clusters):
    """It names one of 120: the split is in effect by sequence, and said nothing."""
    fasta, clusters = family_and_clusters
    one = {member: cluster for member, cluster in read_clusters(clusters).items() if member == "seq0"}
    with pytest.warns(UserWarning, match="the cluster file lacks 119 of the 120 sequences"):
        split(read_fasta(fasta, PROTEIN), 0.2, 0, one)


def test_a_control_character_in_a_training_sequence_drops_it_as_the_template_rules_refuse_it(tmp_path):
    path = tmp_path / "family.fasta"
    path.write_text(f">a\n{SEQ}\n>b\n{SEQ[:10]}\x1c{SEQ[10:]}\n>c\n{SEQ[:10]} \u00a0{SEQ[10:]}\n")
    data = read_fasta(path, PROTEIN)
    assert data.ids == ["a", "c"] and data.num_dropped == 1


def test_a_cluster_file_that_is_a_folder_is_named_as_a_folder(tmp_path):
    with pytest.raises(ValueError, match=rf"cluster file {tmp_path} is a folder, not a cluster<TAB>member file"):
        read_clusters(tmp_path)                                # was: "does not exist"
