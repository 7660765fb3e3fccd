"""Data sets on disk: PASCAL VOC/SBD, NYUDv2, SIFT Flow, PASCAL-Context and ADE20K behind one
interface, their label formats, and generated copies for tests and the golden suite."""
