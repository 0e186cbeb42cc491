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


def test_canvas_sampler_batches_only_equal_canvases_and_covers_every_share():
    from matchdetr.data.sampler import CanvasBatchSampler

    keys = [(96, 128), (96, 160), (96, 128), None, (96, 128), (96, 160), None, (96, 128)]
    batches = list(CanvasBatchSampler(keys, 2))
    assert batches == [[0, 2], [4, 7], [1, 5], [3], [6]]  # groups by first index; unknown sizes alone
    assert all(len({keys[i] for i in b}) == 1 for b in batches)
    shares = [i for r in range(3) for b in CanvasBatchSampler(keys, 4, rank=r, world=3) for i in b]
    assert sorted(shares) == list(range(8))


def test_collate_canvases_pads_each_image_to_its_own_canvas():
    import torch

    from matchdetr.data.collate import canvas, collate_canvases
    from matchdetr.structures import Target

    def sample(h, w):
        return torch.ones(3, h, w), Target(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), 0, (h, w), (h, w))

    groups = collate_canvases([sample(96, 100), sample(96, 150), sample(90, 128)])
    assert [(idx, tuple(b.images.shape[-2:])) for idx, b in groups] == [([0, 2], (96, 128)), ([1], (96, 160))]
    assert canvas((96, 100)) == (96, 128) and canvas((1, 33), 16) == (16, 48)
    alone = collate_canvases([sample(96, 100)])[0][1]
    assert torch.equal(alone.pixel_mask[0], groups[0][1].pixel_mask[0])  # the same padding alone as in a batch
