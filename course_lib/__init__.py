"""Reference PyTorch implementations for the course *Convolutional networks and beyond*.

Every chapter, every assignment test and the grader import from here; nothing is implemented twice.
The modules follow the book: ``conv`` and ``pool`` (chapter 2), ``filters``, ``data``, ``plot``, ...
"""
from course_lib.runtime import device, seed_everything

__all__ = ["device", "seed_everything"]
__version__ = "0.1.0"
