"""The bundled shapes dataset: deterministic, valid COCO, consistent label maps."""
import hashlib
import os
import os.path as osp

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from mmwrs.datasets import CLASSES, generate_shapes


def _digest(root):
    digest = hashlib.sha256()
    for folder, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            with open(osp.join(folder, name), 'rb') as f:
                digest.update(name.encode() + f.read())
    return digest.hexdigest()


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a = generate_shapes(str(tmp_path / 'a'), num_train=4, num_val=2, img_size=64, seed=3)
    b = generate_shapes(str(tmp_path / 'b'), num_train=4, num_val=2, img_size=64, seed=3)
    c = generate_shapes(str(tmp_path / 'c'), num_train=4, num_val=2, img_size=64, seed=4)
    assert _digest(a) == _digest(b) != _digest(c)


def test_complete_dataset_is_not_rewritten(tmp_path):
    root = generate_shapes(str(tmp_path / 'd'), num_train=2, num_val=2, img_size=64)
    stamp = os.stat(osp.join(root, 'images', 'train', '000000.png')).st_mtime_ns
    generate_shapes(root, num_train=2, num_val=2, img_size=64)
    assert os.stat(osp.join(root, 'images', 'train', '000000.png')).st_mtime_ns == stamp


def test_coco_annotations_are_valid_and_match_label_maps(shapes_root):
    coco = COCO(osp.join(shapes_root, 'annotations', 'instances_train.json'))
    assert [c['name'] for c in coco.loadCats(coco.getCatIds())] == list(CLASSES)
    assert len(coco.getAnnIds()) >= len(coco.getImgIds())
    for image in coco.loadImgs(coco.getImgIds()):
        label_map = cv2.imread(osp.join(shapes_root, 'seg_maps', 'train', image['file_name']),
                               cv2.IMREAD_UNCHANGED)
        assert set(np.unique(label_map)) <= {0, 1, 2, 3}
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=image['id'])):
            x, y, w, h = ann['bbox']
            assert 0 <= x and 0 <= y and x + w <= image['width'] and y + h <= image['height']
            mask = coco.annToMask(ann).astype(bool)
            # The visible pixels of an instance carry its class in the label map.
            agreement = (label_map[mask] == ann['category_id']).mean()
            assert agreement > 0.9, (image['file_name'], ann['id'], agreement)


@pytest.mark.parametrize('key, value', [('num_train', 0), ('img_size', 8), ('max_objects', 0)])
def test_bad_parameters_are_named(tmp_path, key, value):
    with pytest.raises(ValueError, match=f'{key} must be an integer'):
        generate_shapes(str(tmp_path / 'x'), **{key: value})
