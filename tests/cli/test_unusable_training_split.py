"""A training split none of whose images can be decoded (here every file over PIL's decompression-bomb limit,
a header claiming 20000 x 20000 pixels) ends in one clear line naming the split, how many images were tried and
why, with or without DataLoader workers; never a traceback, never a training run on nothing."""

from __future__ import annotations

import shutil
import struct
import zlib
from pathlib import Path

import pytest

from cli_corpus import assert_one_line_error, run_cli, sets, train_args


def _bomb(path: Path, width: int = 20000, height: int = 20000) -> None:
    """A PNG whose header claims ``width x height`` (the data is a stub), as a decompression bomb does."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


@pytest.mark.parametrize("workers", [0, 2])
def test_a_training_split_without_a_decodable_image_is_one_clear_line(synth_dir, tmp_path, capsys, workers):
    data = Path(shutil.copytree(synth_dir, tmp_path / "data"))
    images = sorted((data / "train").iterdir())
    for image in images:
        _bomb(image)
    o = run_cli(train_args(data, tmp_path / "run", "--no-val", *sets(f"data.num_workers={workers}")), capsys)
    assert_one_line_error(o, "instances_train.json", f"none of the {len(images)} images", "decompression bomb")
    assert not (tmp_path / "run" / "model.safetensors").exists()
