"""The retrieval protocol's registration: its synthetic task, COCO and Flickr30k (Karpathy
splits), its columns."""

from __future__ import annotations

from levl_eval.columns import Column
from levl_eval.datasets.karpathy import read_coco, read_flickr30k
from levl_eval.protocols.entry import ProtocolEntry
from levl_eval.protocols.retrieval.protocol import Retrieval
from levl_eval.protocols.retrieval.synth import synth_retrieval

ENTRY = ProtocolEntry(
    protocol=Retrieval,
    order=60,
    synth_task=synth_retrieval,
    real_datasets={"coco": read_coco, "flickr30k": read_flickr30k},
    columns=(Column("i2t R@1", ("i2t_r1",)), Column("t2i R@1", ("t2i_r1",)),
             Column("retrieval mean R", ("mean_recall",))),
    readout_table=("Retrieval readouts", "i2t_r1", "i2t R@1"),
)
