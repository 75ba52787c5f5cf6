"""A deterministic synthetic "shapes" dataset for detection and segmentation.

Each scene shows a few circles, squares and triangles of varied colour, size and
position on a textured background. The same scenes are written as COCO instance
annotations (boxes + polygon masks, for mmdet) and as mmseg label maps::

    <out>/images/{train,val}/000000.png
    <out>/annotations/instances_{train,val}.json
    <out>/seg_maps/{train,val}/000000.png   (0 background, 1..3 = classes)
    <out>/manifest.json                     (parameters; a complete dataset)

numpy + OpenCV only, so it runs without mmengine.
"""
import json
import os
import os.path as osp
from typing import Dict, List

import cv2
import numpy as np

CLASSES = ('circle', 'square', 'triangle')
PALETTE = [(220, 20, 60), (0, 130, 230), (250, 170, 30)]
# What stock CocoDataset / BaseSegDataset need to read the data (``metainfo=``).
DET_METAINFO = dict(classes=CLASSES, palette=PALETTE)
SEG_METAINFO = dict(classes=('background', ) + CLASSES, palette=[(0, 0, 0)] + PALETTE)
SPLITS = ('train', 'val')
_MANIFEST = 'manifest.json'


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Low-frequency colour noise plus stripes: texture, not a flat field."""
    base = rng.uniform(40, 200, size=3)
    coarse = rng.normal(0, 15, size=(size // 8 + 1, size // 8 + 1, 3))
    noise = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[:size, :size]
    angle, period = rng.uniform(0, np.pi), rng.uniform(6, 20)
    stripes = 12 * np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
    fine = rng.normal(0, 6, size=(size, size, 3))
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


def _scene(rng: np.random.Generator, size: int, max_objects: int):
    image = _background(rng, size)
    label_map = np.zeros((size, size), np.uint8)
    instance_map = np.full((size, size), -1, np.int32)
    labels = []
    for index in range(rng.integers(1, max_objects + 1)):
        label = int(rng.integers(len(CLASSES)))
        radius = rng.uniform(0.08, 0.2) * size
        cx, cy = rng.uniform(radius, size - radius, size=2)
        mask = np.zeros((size, size), np.uint8)
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
                 first_ann_id: int, min_area: int) -> List[Dict]:
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
            id=first_ann_id + len(annotations), image_id=image_id, category_id=label + 1,
            bbox=[x0, y0, float(xs.max()) + 1 - x0, float(ys.max()) + 1 - y0],
            area=area, segmentation=polygons, iscrowd=0))
    return annotations


def generate_shapes(out_dir: str, num_train: int = 400, num_val: int = 100,
                    img_size: int = 128, max_objects: int = 3, seed: int = 0,
                    min_area: int = 20) -> str:
    """Write the dataset to ``out_dir`` (skipped when it is already complete).

    Args:
        out_dir (str): Destination folder.
        num_train (int): Training scenes.
        num_val (int): Validation scenes.
        img_size (int): Square image side in pixels.
        max_objects (int): At most this many shapes per scene (at least one).
        seed (int): Same seed and parameters, same bytes.
        min_area (int): Instances with fewer visible pixels are not annotated
            (they stay in the label maps).

    Returns:
        str: ``out_dir``.
    """
    for key, value, low in (('num_train', num_train, 1), ('num_val', num_val, 1),
                            ('img_size', img_size, 32), ('max_objects', max_objects, 1)):
        if not isinstance(value, int) or value < low:
            raise ValueError(f'{key} must be an integer >= {low}, got {value!r}')
    params = dict(num_train=num_train, num_val=num_val, img_size=img_size,
                  max_objects=max_objects, seed=seed, min_area=min_area,
                  classes=list(CLASSES), version=1)
    manifest = osp.join(out_dir, _MANIFEST)
    if osp.exists(manifest):
        with open(manifest) as f:
            if json.load(f) == params:
                return out_dir
    counts = dict(train=num_train, val=num_val)
    for offset, split in enumerate(SPLITS):
        rng = np.random.default_rng([seed, offset])
        image_dir = osp.join(out_dir, 'images', split)
        seg_dir = osp.join(out_dir, 'seg_maps', split)
        os.makedirs(image_dir, exist_ok=True)
        os.makedirs(seg_dir, exist_ok=True)
        images, annotations = [], []
        for image_id in range(counts[split]):
            image, label_map, instance_map, labels = _scene(rng, img_size, max_objects)
            name = f'{image_id:06d}.png'
            cv2.imwrite(osp.join(image_dir, name), image[..., ::-1])  # RGB -> BGR file
            cv2.imwrite(osp.join(seg_dir, name), label_map)
            images.append(dict(id=image_id, file_name=name, width=img_size, height=img_size))
            annotations += _annotations(instance_map, labels, image_id,
                                        len(annotations) + 1, min_area)
        coco = dict(images=images, annotations=annotations,
                    categories=[dict(id=i + 1, name=n) for i, n in enumerate(CLASSES)])
        os.makedirs(osp.join(out_dir, 'annotations'), exist_ok=True)
        with open(osp.join(out_dir, 'annotations', f'instances_{split}.json'), 'w') as f:
            json.dump(coco, f)
    with open(manifest, 'w') as f:  # last: marks the dataset complete
        json.dump(params, f)
    return out_dir
