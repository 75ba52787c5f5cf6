"""The bundled synthetic shapes data (read by stock CocoDataset / BaseSegDataset)."""
from .shapes_generator import (CLASSES, DET_METAINFO, SEG_METAINFO,
                               generate_shapes)

__all__ = ['CLASSES', 'DET_METAINFO', 'SEG_METAINFO', 'generate_shapes']
