from matchdetr.data.sampler import EpochBatchSampler


def test_deterministic_and_resumable():
    s = EpochBatchSampler(23, 4, shuffle=True, seed=3, drop_last=True)
    s.set_epoch(2)
    full = list(s)
    assert len(full) == 5 and all(len(b) == 4 for b in full)
    s.set_epoch(2, start_batch=3)
    assert list(s) == full[3:]
    s.set_epoch(3)
    assert list(s) != full


def test_distributed_shares_cover_dataset():
    shares = []
    for r in range(3):
        s = EpochBatchSampler(10, 2, shuffle=True, seed=0, rank=r, world=3)
        s.set_epoch(0)
        shares.append([i for b in s for i in b])
    assert len({len(x) for x in shares}) == 1  # equal batches per process
    assert set().union(*map(set, shares)) == set(range(10))


def test_eval_sampler_no_duplicates():
    seen = []
    for r in range(3):
        s = EpochBatchSampler(10, 4, shuffle=False, rank=r, world=3, pad=False)
        seen += [i for b in s for i in b]
    assert sorted(seen) == list(range(10))


def test_tiny_dataset_keeps_one_batch():
    s = EpochBatchSampler(3, 8, shuffle=True, drop_last=True)
    assert s.batches_per_epoch() == 1 and len(list(s)[0]) == 3
