"""Figures of the book drawn in code: block diagrams read from the ``course_lib`` modules
(:mod:`.blocks`, :mod:`.unet`) and schematics of the cells and training loops (:mod:`.cells`)."""
from course_lib.diagrams.blocks import draw_branches, draw_dense_block, draw_network, network_layers
from course_lib.diagrams.cells import draw_gan_loop, draw_gru_cell, draw_lstm_cell, draw_rnn_unrolled
from course_lib.diagrams.trace import LayerRecord, trace
from course_lib.diagrams.unet import draw_unet, unet_levels

__all__ = ["LayerRecord", "draw_branches", "draw_dense_block", "draw_gan_loop", "draw_gru_cell",
           "draw_lstm_cell", "draw_network", "draw_rnn_unrolled", "draw_unet", "network_layers", "trace",
           "unet_levels"]
