from dataclasses import replace

import numpy as np
import pytest

from ttsprep.stages.core.config import FilterConfig, ShardConfig, SplitAssignConfig
from ttsprep.stages.core.records import Utterance
from ttsprep.stages.step1_ingest.filters import apply_metadata_filters, cps_bounds
from ttsprep.stages.step1_ingest.plan import ShardSpec, content_key, load_plan, plan_shards, save_plan
from ttsprep.stages.step1_ingest.splits import assign_split, corpus_split, split_overlap


def utt(index: int, *, duration_s: float = 2.0, text: str = "hello world again", language: str = "en",
        checksum: str = "c", **extra) -> Utterance:
    return Utterance(utt_id=f"d:{index:04d}", dataset="d", speaker=f"s{index % 3}", language=language, text=text,
                     audio_path=f"/x/{index}.wav", sample_rate=22050, channels=1,
                     num_samples=int(duration_s * 22050), duration_s=duration_s, checksum=checksum,
                     audio_format="WAV/PCM_16", extra=extra)


def test_duration_votes_and_blocklist(tmp_path):
    blocklist = tmp_path / "block.txt"
    blocklist.write_text("# bad takes\nd:0003\n0004  # local id form\n")
    items = [utt(0), utt(1, duration_s=0.1), utt(2, duration_s=45), utt(3), utt(4),
             utt(5, up_votes="2", down_votes="2"), utt(6, up_votes="3", down_votes="1")]
    kept, rejects = apply_metadata_filters(items, FilterConfig(blocklist=blocklist, cps_rule="none"))
    assert [u.utt_id for u in kept] == ["d:0000", "d:0006"]
    reasons = {r.utt_id: r.reason for r in rejects}
    assert reasons == {"d:0001": "too_short", "d:0002": "too_long", "d:0003": "blocklisted",
                       "d:0004": "blocklisted", "d:0005": "down_votes"}
    assert "duration_s=0.100 < min_duration_s=0.3" in next(r.detail for r in rejects if r.utt_id == "d:0001")


def test_cps_outliers_are_dropped_per_language_with_the_value():
    rng = np.random.default_rng(0)
    normal = [utt(i, duration_s=float(d), text="x" * 30) for i, d in enumerate(rng.uniform(1.9, 2.1, 40))]
    fast = utt(99, duration_s=0.5, text="x" * 30)  # 60 chars/s against ~15
    other_language = [utt(200 + i, duration_s=0.5, text="x" * 30, language="ja") for i in range(5)]
    kept, rejects = apply_metadata_filters(normal + [fast] + other_language, FilterConfig())
    assert [r.utt_id for r in rejects] == ["d:0099"]
    assert rejects[0].reason == "cps_outlier" and "60.00 chars/s" in rejects[0].detail
    assert len(kept) == 45  # the 5 ja utterances are too few for the rule (cps_min_count)


def test_cps_bounds_iqr_and_mad_are_robust():
    values = np.array([10.0] * 10 + [11.0] * 10 + [1000.0])
    for rule in ("mad", "iqr"):
        low, high = cps_bounds(values, FilterConfig(cps_rule=rule))
        assert low <= 10 and 11 <= high < 100


def test_plan_keeps_unchanged_shards_and_adds_new_ones(tmp_path):
    cfg = ShardConfig(max_utterances=3)
    first = plan_shards([utt(i) for i in range(7)], [], cfg)
    assert [len(s.members) for s in first] == [3, 3, 1]
    save_plan(tmp_path / "plan.json", first)
    assert load_plan(tmp_path / "plan.json") == first
    # two files added: old shards unchanged, the new ones go to a new shard
    second = plan_shards([utt(i) for i in range(9)], first, cfg)
    assert second[:3] == first and [m[0] for m in second[3].members] == ["d:0007", "d:0008"]
    # one file changed: only its shard is dissolved and re-planned
    changed = [utt(i, checksum="new" if i == 4 else "c") for i in range(7)]
    third = plan_shards(changed, first, cfg)
    assert first[0] in third and first[2] in third and first[1] not in third
    assert sorted(m for s in third for m in s.members) == sorted((u.utt_id, content_key(u)) for u in changed)
    # a corrected transcript with the same audio also re-plans its shard (phonemes depend on it)
    retyped = [utt(i) if i != 0 else replace(utt(i), text="a corrected transcript") for i in range(7)]
    fourth = plan_shards(retyped, first, cfg)
    assert first[0] not in fourth and first[1] in fourth and first[2] in fourth


def test_small_shards_are_compacted_and_a_rerun_keeps_every_key():
    cfg = ShardConfig(max_utterances=100)  # small: under 25 utterances
    plan: list[ShardSpec] = []
    for day in range(1, 41):  # one new file a day: a small shard that grows, never 40 one-row shards
        plan = plan_shards([utt(i) for i in range(day)], plan, cfg)
        sizes = sorted(len(s.members) for s in plan)
        assert sizes == ([day] if day <= 25 else [day - 25, 25]), day  # at most one shard under 25
    assert plan_shards([utt(i) for i in range(40)], plan, cfg) == plan  # no new data: unchanged
    big = plan_shards([utt(i) for i in range(180)], plan, cfg)
    full = next(spec for spec in plan if len(spec.members) == 25)
    assert full in big and sorted(len(s.members) for s in big) == [25, 55, 100]  # the small one joined the new
    one_more = plan_shards([utt(i) for i in range(181)], big, cfg)
    assert all(spec in one_more for spec in big) and len(one_more) == 4  # shards over 25 are never dissolved
    two_more = plan_shards([utt(i) for i in range(182)], one_more, cfg)
    assert all(spec in two_more for spec in big) and sorted(len(s.members) for s in two_more) == [2, 25, 55, 100]
    assert plan_shards([utt(i) for i in range(182)], two_more, cfg) == two_more


def test_plan_respects_size_target():
    items = [utt(i, duration_s=10.0) for i in range(10)]  # ~0.65 MB each
    specs = plan_shards(items, [], ShardConfig(max_utterances=100, target_mb=2.0))
    assert all(len(s.members) <= 3 for s in specs) and sum(len(s.members) for s in specs) == 10


def test_shard_key_depends_on_inputs_config_code_and_tools():
    spec = ShardSpec("part-00000", (("d:1", "aa"),))
    base = spec.key("cfg", "code", {"pyworld": "0.3.5"})
    assert base == spec.key("cfg", "code", {"pyworld": "0.3.5"})
    assert len({base, spec.key("cfg2", "code", {"pyworld": "0.3.5"}), spec.key("cfg", "code2", {"pyworld": "0.3.5"}),
                spec.key("cfg", "code", {"pyworld": "0.3.6"}),
                ShardSpec("part-00000", (("d:1", "ab"),)).key("cfg", "code", {"pyworld": "0.3.5"})}) == 5


@pytest.mark.parametrize("name, expected", [("train-clean-100", "train"), ("dev-clean", "dev"), ("test", "test"),
                                            ("validated", None), (None, None), ("valid", "dev")])
def test_corpus_split_names(name, expected):
    assert corpus_split(name) == expected


def test_hash_split_is_deterministic_and_held_out_speakers_go_to_test():
    cfg = SplitAssignConfig(held_out_speakers=["s1"], dev_fraction=0.1, test_fraction=0.1)
    items = [utt(i) for i in range(300)]
    splits = [assign_split(u, cfg) for u in items]
    assert splits == [assign_split(u, cfg) for u in items]
    assert all(s == "test" for u, s in zip(items, splits) if u.speaker == "s1")
    others = [s for u, s in zip(items, splits) if u.speaker != "s1"]
    assert 0.03 < others.count("dev") / len(others) < 0.2
    assert assign_split(replace(items[0], split="train-clean-360"), cfg) == "train"


def test_split_overlap_reports_shared_text_and_speakers():
    report = split_overlap([("train", "a", "Hello  World"), ("test", "a", "hello world"), ("dev", "b", "other")])
    assert report["test"] == {"shared_texts": 1, "shared_speakers": 1, "example_texts": ["hello world"]}
    assert report["dev"]["shared_texts"] == 0 and report["dev"]["shared_speakers"] == 0
