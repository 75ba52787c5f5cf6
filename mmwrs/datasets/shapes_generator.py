"""A deterministic synthetic "shapes" dataset for detection and segmentation.

Each scene shows a few circles, squares and triangles of varied colour, size and
position on a textured background. The scenes are written in one of four
layouts (``layout=``):

``shapes`` (the default; the demo configs read it with the shapes classes)::

    <out>/images/{train,val}/000000.png
    <out>/annotations/instances_{train,val}.json   (boxes + polygon masks)
    <out>/seg_maps/{train,val}/000000.png          (0 background, 1..3 = classes)

``coco``: the COCO 2017 tree that stock mmdet configs read (``data/coco/``),
with COCO's 80 categories; the shapes are 'sports ball', 'tv' and 'kite'::

    <out>/annotations/instances_{train,val}2017.json
    <out>/{train,val}2017/000000000001.jpg

``cityscapes``: the tree of stock mmseg Cityscapes configs (``data/cityscapes/``)
after ``tools/dataset_converters/cityscapes.py``: label maps of the 19 train ids,
255 = ignore (a strip at the bottom, like the ego vehicle); 2:1 images; the
background is 'road', the shapes 'traffic sign', 'car' and 'person'::

    <out>/leftImg8bit/{train,val}/<city>/<city>_000000_000019_leftImg8bit.png
    <out>/gtFine/{train,val}/<city>/<city>_000000_000019_gtFine_labelTrainIds.png

``ade20k``: the ADEChallengeData2016 tree (``data/ade/ADEChallengeData2016/``):
label maps of ADE's 150 classes, 1-based, 0 = 'other' (a strip at the top),
which ``reduce_zero_label`` turns into the ignore index; the background is
'floor', the shapes 'ball', 'box' and 'signboard'::

    <out>/images/{training,validation}/ADE_train_00000001.jpg
    <out>/annotations/{training,validation}/ADE_train_00000001.png

Every layout has ``<out>/manifest.json`` (the parameters; written last, it
marks a complete dataset). numpy + OpenCV only, so it runs without mmengine.
"""
import json
import os
import os.path as osp
import shutil
from typing import Dict, List, Sequence

import cv2
import numpy as np

CLASSES = ('circle', 'square', 'triangle')
PALETTE = [(220, 20, 60), (0, 130, 230), (250, 170, 30)]
# What stock CocoDataset / BaseSegDataset need to read the data (``metainfo=``).
DET_METAINFO = dict(classes=CLASSES, palette=PALETTE)
SEG_METAINFO = dict(classes=('background', ) + CLASSES, palette=[(0, 0, 0)] + PALETTE)
SPLITS = ('train', 'val')
_MANIFEST = 'manifest.json'
LAYOUTS = ('shapes', 'coco', 'cityscapes', 'ade20k')

# COCO 2017's 80 categories as (id, name): the names, in this order, are stock
# mmdet CocoDataset's classes; the ids have COCO's gaps.
COCO_CATEGORIES = tuple(enumerate((
    'person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train', 'truck', 'boat',
    'traffic light', 'fire hydrant', None, 'stop sign', 'parking meter', 'bench', 'bird', 'cat',
    'dog', 'horse', 'sheep', 'cow', 'elephant', 'bear', 'zebra', 'giraffe', None, 'backpack',
    'umbrella', None, None, 'handbag', 'tie', 'suitcase', 'frisbee', 'skis', 'snowboard',
    'sports ball', 'kite', 'baseball bat', 'baseball glove', 'skateboard', 'surfboard',
    'tennis racket', 'bottle', None, 'wine glass', 'cup', 'fork', 'knife', 'spoon', 'bowl',
    'banana', 'apple', 'sandwich', 'orange', 'broccoli', 'carrot', 'hot dog', 'pizza', 'donut',
    'cake', 'chair', 'couch', 'potted plant', 'bed', None, 'dining table', None, None, 'toilet',
    None, 'tv', 'laptop', 'mouse', 'remote', 'keyboard', 'cell phone', 'microwave', 'oven',
    'toaster', 'sink', 'refrigerator', None, 'book', 'clock', 'vase', 'scissors', 'teddy bear',
    'hair drier', 'toothbrush'), start=1))
COCO_CATEGORIES = tuple((i, n) for i, n in COCO_CATEGORIES if n is not None)
# What each shape (CLASSES order) is in each layout.
COCO_SHAPE_NAMES = ('sports ball', 'tv', 'kite')
CITYSCAPES_CLASSES = ('road', 'sidewalk', 'building', 'wall', 'fence', 'pole', 'traffic light',
                      'traffic sign', 'vegetation', 'terrain', 'sky', 'person', 'rider', 'car',
                      'truck', 'bus', 'train', 'motorcycle', 'bicycle')
CITYSCAPES_BACKGROUND = 'road'
CITYSCAPES_SHAPE_NAMES = ('traffic sign', 'car', 'person')
CITYSCAPES_IGNORE = 255
# ADE20K labels as stored (1-based; 0 is 'other', ignored under reduce_zero_label):
# 'floor' is ADE's 4th class, 'ball' the 120th, 'box' the 42nd, 'signboard' the 44th.
ADE20K_BACKGROUND = 4
ADE20K_SHAPE_LABELS = (120, 42, 44)
ADE20K_OTHER = 0
# Folders each layout writes (removed before regenerating with other parameters).
_LAYOUT_DIRS = {
    'shapes': ('images', 'annotations', 'seg_maps'),
    'coco': ('annotations', 'train2017', 'val2017'),
    'cityscapes': ('leftImg8bit', 'gtFine'),
    'ade20k': ('images', 'annotations'),
}
_CITIES = dict(train=('aachen', 'bochum'), val=('frankfurt', 'lindau'))
_JPEG = [cv2.IMWRITE_JPEG_QUALITY, 95]


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Low-frequency colour noise plus stripes: texture, not a flat field."""
    base = rng.uniform(40, 200, size=3)
    coarse = rng.normal(0, 15, size=(height // 8 + 1, width // 8 + 1, 3))
    noise = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[:height, :width]
    angle, period = rng.uniform(0, np.pi), rng.uniform(6, 20)
    stripes = 12 * np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
    fine = rng.normal(0, 6, size=(height, width, 3))
    image = base + noise + stripes[..., None] + fine
    return np.clip(image, 0, 255).astype(np.uint8)


def _draw(mask: np.ndarray, label: int, cx: float, cy: float, radius: float,
          angle: float) -> None:
    if label == 0:
        cv2.circle(mask, (int(cx), int(cy)), int(radius), 1, -1)
        return
    corners = 4 if label == 1 else 3
    theta = angle + np.arange(corners) * 2 * np.pi / corners
    points = np.stack([cx + radius * np.cos(theta), cy + radius * np.sin(theta)], 1)
    cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 1)


def _scene(rng: np.random.Generator, height: int, width: int, max_objects: int):
    """An RGB image, its label map (0 background, 1..3 the classes), its
    instance map (-1 background) and the class index of each instance."""
    image = _background(rng, height, width)
    label_map = np.zeros((height, width), np.uint8)
    instance_map = np.full((height, width), -1, np.int32)
    labels = []
    for index in range(rng.integers(1, max_objects + 1)):
        label = int(rng.integers(len(CLASSES)))
        radius = rng.uniform(0.08, 0.2) * min(height, width)
        cx, cy = rng.uniform((radius, radius), (width - radius, height - radius))
        mask = np.zeros((height, width), np.uint8)
        _draw(mask, label, cx, cy, radius, rng.uniform(0, np.pi))
        colour = rng.uniform(0, 255, size=3)
        if np.abs(colour - image[mask > 0].mean(0)).max() < 60:  # keep it visible
            colour = 255 - colour
        image[mask > 0] = colour.astype(np.uint8)
        label_map[mask > 0] = label + 1
        instance_map[mask > 0] = index
        labels.append(label)
    return image, label_map, instance_map, labels


def _annotations(instance_map: np.ndarray, labels: List[int], image_id: int,
                 first_ann_id: int, min_area: int,
                 category_ids: Sequence[int] = (1, 2, 3)) -> List[Dict]:
    annotations = []
    for index, label in enumerate(labels):
        visible = (instance_map == index).astype(np.uint8)
        area = int(visible.sum())
        if area < min_area:
            continue
        contours, _ = cv2.findContours(visible, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        polygons = [c.reshape(-1).astype(float).tolist() for c in contours if len(c) >= 3]
        if not polygons:
            continue
        ys, xs = np.nonzero(visible)
        x0, y0 = float(xs.min()), float(ys.min())
        annotations.append(dict(
            id=first_ann_id + len(annotations), image_id=image_id,
            category_id=category_ids[label],
            bbox=[x0, y0, float(xs.max()) + 1 - x0, float(ys.max()) + 1 - y0],
            area=area, segmentation=polygons, iscrowd=0))
    return annotations


def _write_json(path: str, content: dict) -> None:
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        json.dump(content, f)


def _write_image(path: str, image: np.ndarray) -> None:
    os.makedirs(osp.dirname(path), exist_ok=True)
    cv2.imwrite(path, image[..., ::-1], _JPEG if path.endswith('.jpg') else [])  # RGB -> BGR


def _write_label_map(path: str, label_map: np.ndarray) -> None:
    os.makedirs(osp.dirname(path), exist_ok=True)
    cv2.imwrite(path, label_map)


def _lookup(shape_values: Sequence[int], background: int, label_map: np.ndarray) -> np.ndarray:
    """A shapes label map (0 background, 1..3) with its values replaced."""
    table = np.array((background, ) + tuple(shape_values), np.uint8)
    return table[label_map]


def _write_split(out_dir: str, layout: str, split: str, scenes, img_size: int,
                 min_area: int) -> None:
    """Write one split's ``scenes`` (``(image, label_map, instance_map, labels)``)."""
    if layout in ('shapes', 'coco'):
        if layout == 'shapes':
            image_dir, ann_file = f'images/{split}', f'instances_{split}.json'
            category_ids = [i + 1 for i in range(len(CLASSES))]
            categories = [dict(id=i + 1, name=n) for i, n in enumerate(CLASSES)]
        else:
            image_dir, ann_file = f'{split}2017', f'instances_{split}2017.json'
            ids = {name: i for i, name in COCO_CATEGORIES}
            category_ids = [ids[name] for name in COCO_SHAPE_NAMES]
            categories = [dict(id=i, name=n) for i, n in COCO_CATEGORIES]
        images, annotations = [], []
        for index, (image, label_map, instance_map, labels) in enumerate(scenes):
            # COCO's ids start at 1, its file names are the 12-digit id.
            image_id = index if layout == 'shapes' else index + 1
            name = f'{index:06d}.png' if layout == 'shapes' else f'{image_id:012d}.jpg'
            _write_image(osp.join(out_dir, image_dir, name), image)
            if layout == 'shapes':
                _write_label_map(osp.join(out_dir, 'seg_maps', split, name), label_map)
            height, width = label_map.shape
            images.append(dict(id=image_id, file_name=name, width=width, height=height))
            annotations += _annotations(instance_map, labels, image_id,
                                        len(annotations) + 1, min_area, category_ids)
        coco = dict(images=images, annotations=annotations, categories=categories)
        if layout == 'coco':
            coco = dict(info=dict(description='mmwrs synthetic shapes in the COCO layout'),
                        licenses=[], **coco)
        _write_json(osp.join(out_dir, 'annotations', ann_file), coco)
    elif layout == 'cityscapes':
        cities = _CITIES[split]
        shape_ids = [CITYSCAPES_CLASSES.index(n) for n in CITYSCAPES_SHAPE_NAMES]
        for index, (image, label_map, _, _) in enumerate(scenes):
            city = cities[index % len(cities)]
            stem = f'{city}_{index // len(cities):06d}_000019'
            train_ids = _lookup(shape_ids, CITYSCAPES_CLASSES.index(CITYSCAPES_BACKGROUND),
                                label_map)
            # Unlabeled pixels (Cityscapes' ego vehicle, at the bottom) are 255.
            strip = train_ids[-max(1, img_size // 8):]
            strip[label_map[-len(strip):] == 0] = CITYSCAPES_IGNORE
            _write_image(osp.join(out_dir, 'leftImg8bit', split, city,
                                  f'{stem}_leftImg8bit.png'), image)
            _write_label_map(osp.join(out_dir, 'gtFine', split, city,
                                      f'{stem}_gtFine_labelTrainIds.png'), train_ids)
    else:  # ade20k
        folder = 'training' if split == 'train' else 'validation'
        for index, (image, label_map, _, _) in enumerate(scenes):
            stem = f'ADE_{split}_{index + 1:08d}'
            labels = _lookup(ADE20K_SHAPE_LABELS, ADE20K_BACKGROUND, label_map)
            # An unlabeled region ('other', 0) at the top.
            strip = labels[:max(1, img_size // 8)]
            strip[label_map[:len(strip)] == 0] = ADE20K_OTHER
            _write_image(osp.join(out_dir, 'images', folder, f'{stem}.jpg'), image)
            _write_label_map(osp.join(out_dir, 'annotations', folder, f'{stem}.png'), labels)


def generate_shapes(out_dir: str, num_train: int = 400, num_val: int = 100,
                    img_size: int = 128, max_objects: int = 3, seed: int = 0,
                    min_area: int = 20, layout: str = 'shapes') -> str:
    """Write the dataset to ``out_dir`` (skipped when it is already complete).

    Args:
        out_dir (str): Destination folder: new, empty, or written by this
            function before (it holds ``manifest.json``; then the folders of
            that layout are replaced when the parameters differ).
        num_train (int): Training scenes.
        num_val (int): Validation scenes.
        img_size (int): Image height in pixels; images are square, but twice
            as wide for ``layout='cityscapes'``.
        max_objects (int): At most this many shapes per scene (at least one).
        seed (int): Same seed and parameters, same bytes.
        min_area (int): Instances with fewer visible pixels are not annotated
            (they stay in the label maps).
        layout (str): One of :data:`LAYOUTS`; see the module docstring.

    Returns:
        str: ``out_dir``.

    Raises:
        ValueError: A bad parameter (named with the allowed values), or
            ``out_dir`` holds files this function did not write.
    """
    for key, value, low in (('num_train', num_train, 1), ('num_val', num_val, 1),
                            ('img_size', img_size, 32), ('max_objects', max_objects, 1)):
        if not isinstance(value, int) or value < low:
            raise ValueError(f'{key} must be an integer >= {low}, got {value!r}')
    if layout not in LAYOUTS:
        raise ValueError(f'layout must be one of {LAYOUTS}, got {layout!r}')
    params = dict(num_train=num_train, num_val=num_val, img_size=img_size,
                  max_objects=max_objects, seed=seed, min_area=min_area,
                  classes=list(CLASSES), version=1)
    if layout != 'shapes':  # the shapes manifest stays as it was: no rewrite
        params['layout'] = layout
    manifest = osp.join(out_dir, _MANIFEST)
    if osp.exists(manifest):
        with open(manifest) as f:
            old = json.load(f)
        if old == params:
            return out_dir
        for folder in _LAYOUT_DIRS[old.get('layout', 'shapes')]:
            shutil.rmtree(osp.join(out_dir, folder), ignore_errors=True)
    elif osp.isdir(out_dir) and os.listdir(out_dir):
        # Never mix scenes into (or delete from) a real dataset, e.g. data/coco.
        raise ValueError(f'out_dir {out_dir!r} is not empty and has no {_MANIFEST} of '
                         'this generator; pass a new or empty folder')
    os.makedirs(out_dir, exist_ok=True)
    _write_json(manifest, dict(params, complete=False))  # ours, even if interrupted
    height, width = img_size, img_size * 2 if layout == 'cityscapes' else img_size
    counts = dict(train=num_train, val=num_val)
    for offset, split in enumerate(SPLITS):
        rng = np.random.default_rng([seed, offset])
        scenes = (_scene(rng, height, width, max_objects) for _ in range(counts[split]))
        _write_split(out_dir, layout, split, scenes, img_size, min_area)
    _write_json(manifest, params)  # last: marks the dataset complete
    return out_dir
