"""Whether a dataset can train and score a mask model, decided at start-up instead of at the first evaluation.

A model that predicts masks (``cfg.data.masks``, Mask-DINO) learns its masks from the training split's
segmentations and is scored on the validation split's. Box-only training data would train the mask head on
filled boxes; a validation GT that segm evaluation refuses (an annotation without a segmentation, an RLE whose
size is not its image's, a polygon with NaN) would fail only when the run is first evaluated. Both are one line
(``DatasetError``) before the model is built.
"""

from __future__ import annotations

from ..data.coco import CocoDetection, DatasetError
from .coco_eval import load_coco
from .coco_masks import check_gt_segmentations


def check_mask_data(train: CocoDetection | None, val: CocoDetection | None) -> None:
    """Refuse (one line) a training split without a single usable segmentation, or a validation split whose
    GT segm evaluation would refuse. Both datasets must be opened with ``masks=True``; None skips one."""
    if train is not None:
        usable, total = train.segmentation_counts()
        if total and not usable:
            raise DatasetError(f"{train.coco_json_path}: none of its {total} annotations has a usable segmentation "
                               "(see the warnings above), so a mask model would learn filled boxes as masks; train "
                               "a box model on box-only data, or add segmentations")
    if val is not None:
        check_scoring_gt(val)


def check_scoring_gt(dataset: CocoDetection) -> None:
    """Refuse (one line) a split whose GT ``segm`` evaluation cannot score: the check evaluation itself runs."""
    problem = check_gt_segmentations(load_coco(dataset.coco_gt), str(dataset.coco_json_path))
    if problem:
        raise DatasetError(f"{problem} (a mask model is scored on the masks of this split)")
