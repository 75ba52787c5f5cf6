"""The synthetic shapes data: its own layout (read by stock CocoDataset /
BaseSegDataset with the shapes classes) or the COCO, Cityscapes and ADE20K
trees that stock configs read."""
from .shapes_generator import CLASSES, DET_METAINFO, LAYOUTS, SEG_METAINFO, generate_shapes

__all__ = ['CLASSES', 'DET_METAINFO', 'LAYOUTS', 'SEG_METAINFO', 'generate_shapes']
