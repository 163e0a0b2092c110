"""Judging and using AbdomenAtlas-8K attention maps: pure functions over arrays and tables.

The maps themselves are made by the `attention-annotator` algorithm (algorithms/attention-annotator,
run in its container or by the local runner); the harness never imports its code. Here:

- `priority`: the priority list over all cases (attention size, descending) and the review queue
  (top 5 %, at least one case), each case's organs by heat-map sum;
- `evaluation`: error detection where ground truth exists (component-level sensitivity and
  precision, voxel-level figures, Table-1 summary, Spearman and the share of error voxels in the
  queue);
- `assembly`: final labels by priority (original, revised, pseudo) with each organ's source;
- `io`: the only disk access (annotator output folders, revised masks, CSV, label maps).
"""

from harness.attention.assembly import NO_SOURCE, SOURCES, assemble_case, masks_from_label_map, sources_table
from harness.attention.evaluation import (
    ALL_ORGANS,
    FIGURES,
    MIN_ERROR_VOXELS,
    detect_errors,
    detection_table,
    evaluate_case,
    format_table1,
    priority_check,
    sensitivity_by_size,
    spearman,
    table1,
)
from harness.attention.priority import QUEUE_FRACTION, attention_table, priority_list, queue_size, review_queue

__all__ = [
    "ALL_ORGANS",
    "FIGURES",
    "MIN_ERROR_VOXELS",
    "NO_SOURCE",
    "QUEUE_FRACTION",
    "SOURCES",
    "assemble_case",
    "attention_table",
    "detect_errors",
    "detection_table",
    "evaluate_case",
    "format_table1",
    "masks_from_label_map",
    "priority_check",
    "sensitivity_by_size",
    "priority_list",
    "queue_size",
    "review_queue",
    "sources_table",
    "spearman",
    "table1",
]
