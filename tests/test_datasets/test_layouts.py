"""The shapes scenes in the COCO, Cityscapes and ADE20K layouts, read by the
stock mmdet / mmseg dataset classes with their stock label semantics."""
import os
import os.path as osp

import numpy as np
import pytest

from mmwrs.datasets import generate_shapes
from mmwrs.datasets.shapes_generator import (ADE20K_BACKGROUND, ADE20K_SHAPE_LABELS,
                                             CITYSCAPES_BACKGROUND, CITYSCAPES_CLASSES,
                                             CITYSCAPES_SHAPE_NAMES, CLASSES, COCO_CATEGORIES,
                                             COCO_SHAPE_NAMES)

from conftest import load_tool

SIZE, NUM_TRAIN, NUM_VAL = 64, 6, 3


@pytest.fixture(scope='module')
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp('layouts')
    return {layout: generate_shapes(str(base / layout), num_train=NUM_TRAIN, num_val=NUM_VAL,
                                    img_size=SIZE, seed=1, layout=layout)
            for layout in ('shapes', 'coco', 'cityscapes', 'ade20k')}


def _shapes_label_map(roots, index):
    """The label map (0 background, 1..3 = CLASSES) of train scene ``index``."""
    import cv2
    return cv2.imread(osp.join(roots['shapes'], 'seg_maps', 'train', f'{index:06d}.png'),
                      cv2.IMREAD_UNCHANGED)


def test_coco_layout_reads_with_stock_coco_dataset(roots):
    from mmdet.datasets import CocoDataset
    from mmdet.utils import register_all_modules
    register_all_modules()
    assert tuple(name for _, name in COCO_CATEGORIES) == CocoDataset.METAINFO['classes']
    for split, count in (('train', NUM_TRAIN), ('val', NUM_VAL)):
        dataset = CocoDataset(
            data_root=roots['coco'], ann_file=f'annotations/instances_{split}2017.json',
            data_prefix=dict(img=f'{split}2017/'), test_mode=split == 'val',
            pipeline=[dict(type='LoadImageFromFile'),
                      dict(type='LoadAnnotations', with_bbox=True, with_mask=True)])
        assert len(dataset) == count
    classes = dataset.metainfo['classes']
    # The train scenes are the shapes layout's: each instance mask lies on its
    # shape in the shapes label map, and its COCO category is that shape's.
    dataset = CocoDataset(
        data_root=roots['coco'], ann_file='annotations/instances_train2017.json',
        data_prefix=dict(img='train2017/'),
        pipeline=[dict(type='LoadImageFromFile'),
                  dict(type='LoadAnnotations', with_bbox=True, with_mask=True)])
    instances = 0
    for index in range(len(dataset)):
        sample = dataset[index]
        assert sample['img'].shape == (SIZE, SIZE, 3)
        assert osp.basename(sample['img_path']) == f'{index + 1:012d}.jpg'
        label_map = _shapes_label_map(roots, index)
        masks = sample['gt_masks'].to_ndarray().astype(bool)
        boxes = sample['gt_bboxes'].numpy()
        for label, mask, box in zip(sample['gt_bboxes_labels'], masks, boxes):
            name = classes[label]
            assert name in COCO_SHAPE_NAMES
            shape = CLASSES[COCO_SHAPE_NAMES.index(name)]
            # (64 px scenes: the polygon's rasterized edge adds background pixels)
            assert (label_map[mask] == CLASSES.index(shape) + 1).mean() > 0.75
            ys, xs = np.nonzero(mask)  # the box encloses the mask
            assert box[0] <= xs.min() + 1 and xs.max() <= box[2] + 1
            assert box[1] <= ys.min() + 1 and ys.max() <= box[3] + 1
            instances += 1
    assert instances >= NUM_TRAIN


def test_cityscapes_layout_reads_with_stock_cityscapes_dataset(roots):
    from mmseg.datasets import CityscapesDataset
    from mmseg.utils import register_all_modules
    register_all_modules()
    assert CityscapesDataset.METAINFO['classes'] == CITYSCAPES_CLASSES
    pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations')]
    datasets = {split: CityscapesDataset(
        data_root=roots['cityscapes'], data_prefix=dict(
            img_path=f'leftImg8bit/{split}', seg_map_path=f'gtFine/{split}'),
        pipeline=pipeline) for split in ('train', 'val')}
    assert len(datasets['train']) == NUM_TRAIN and len(datasets['val']) == NUM_VAL
    assert sorted(os.listdir(osp.join(roots['cityscapes'], 'leftImg8bit', 'val'))) == [
        'frankfurt', 'lindau']
    allowed = {CITYSCAPES_CLASSES.index(n) for n in (CITYSCAPES_BACKGROUND, ) +
               CITYSCAPES_SHAPE_NAMES}
    shapes_seen = set()
    for index in range(NUM_TRAIN):
        sample = datasets['train'][index]
        assert sample['img'].shape == (SIZE, 2 * SIZE, 3)
        seg = sample['gt_seg_map']
        assert seg.shape == (SIZE, 2 * SIZE)
        values = set(np.unique(seg).tolist())
        assert values <= allowed | {255}
        # 19 train ids: 255 only in the unlabeled strip at the bottom.
        assert 255 in seg[-SIZE // 8:] and 255 not in seg[:-SIZE // 8]
        assert sample['reduce_zero_label'] is False
        shapes_seen |= values - {0, 255}
    assert shapes_seen  # the shapes are there, as 'traffic sign', 'car', 'person'


def test_ade20k_layout_reads_with_stock_ade20k_dataset(roots):
    from mmseg.datasets import ADE20KDataset
    from mmseg.utils import register_all_modules
    register_all_modules()
    classes = ADE20KDataset.METAINFO['classes']
    assert len(classes) == 150
    assert classes[ADE20K_BACKGROUND - 1] == 'floor'
    assert [classes[v - 1] for v in ADE20K_SHAPE_LABELS] == ['ball', 'box', 'signboard']
    # The stock config's loading: 0 ('other') -> 255 (ignored), k -> k - 1.
    pipeline = [dict(type='LoadImageFromFile'),
                dict(type='LoadAnnotations', reduce_zero_label=True)]
    datasets = {split: ADE20KDataset(
        data_root=roots['ade20k'], data_prefix=dict(
            img_path=f'images/{folder}', seg_map_path=f'annotations/{folder}'),
        pipeline=pipeline)
        for split, folder in (('train', 'training'), ('val', 'validation'))}
    assert len(datasets['train']) == NUM_TRAIN and len(datasets['val']) == NUM_VAL
    table = np.array([ADE20K_BACKGROUND - 1] + [v - 1 for v in ADE20K_SHAPE_LABELS])
    strip = SIZE // 8
    for index in range(NUM_TRAIN):
        sample = datasets['train'][index]
        assert osp.basename(sample['img_path']) == f'ADE_train_{index + 1:08d}.jpg'
        assert sample['img'].shape == (SIZE, SIZE, 3)
        seg, shapes = sample['gt_seg_map'], _shapes_label_map(roots, index)
        # The same scene as the shapes layout, each class renamed...
        assert (seg[strip:] == table[shapes[strip:]]).all()
        # ...and its unlabeled background strip ignored.
        top = seg[:strip]
        assert (top[shapes[:strip] == 0] == 255).all()
        assert (top[shapes[:strip] > 0] == table[shapes[:strip][shapes[:strip] > 0]]).all()


def test_cli_writes_a_layout_and_refuses_a_foreign_folder(tmp_path, capsys):
    tool = load_tool('tools/data/generate_shapes.py')
    tool.main(['--layout', 'cityscapes', '--out', str(tmp_path / 'cs'), '--num-train', '2',
               '--num-val', '1', '--img-size', '32'])
    assert 'cityscapes layout' in capsys.readouterr().out
    assert len(os.listdir(tmp_path / 'cs' / 'gtFine' / 'train' / 'aachen')) == 1
    # Another layout over it replaces its own folders only.
    tool.main(['--layout', 'ade20k', '--out', str(tmp_path / 'cs'), '--num-train', '2',
               '--num-val', '1', '--img-size', '32'])
    assert sorted(os.listdir(tmp_path / 'cs')) == ['annotations', 'images', 'manifest.json']
    (tmp_path / 'real').mkdir()
    (tmp_path / 'real' / 'instances_train2017.json').write_text('{}')
    with pytest.raises(SystemExit):
        tool.main(['--layout', 'coco', '--out', str(tmp_path / 'real')])
    assert 'is not empty and has no manifest.json' in capsys.readouterr().err
    assert os.listdir(tmp_path / 'real') == ['instances_train2017.json']
    with pytest.raises(ValueError, match="layout must be one of .*got 'voc'"):
        generate_shapes(str(tmp_path / 'x'), layout='voc')
